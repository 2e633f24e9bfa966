"""Connections in the dashboard: everyone with access sees them and can check them; only Admins edit."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import circuit
from .forms import ProviderConnectionForm
from .models import ProviderConnection
from .safety import url_save_check
from .services import connection_check


@login_required
@permission_required("connectors.view_providerconnection", raise_exception=True)
def connection_list(request: HttpRequest) -> HttpResponse:
    """Every connection with its fallback, its health (the circuit breaker's state) and its last errors."""
    connections = list(ProviderConnection.objects.select_related("fallback"))
    for connection in connections:
        connection.health = circuit.state(connection) if connection.fallback_id else None
        connection.last_errors = circuit.last_errors(connection)[:3]
    return render(request, "connectors/connection_list.html", {"connections": connections})


@login_required
@permission_required("connectors.change_providerconnection", raise_exception=True)
def connection_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Create or edit a connection; its page also shows who changed what, and when."""
    connection = get_object_or_404(ProviderConnection, pk=pk) if pk else None
    if connection is None and not request.user.has_perm("connectors.add_providerconnection"):
        return render(request, "403.html", status=403)
    form = ProviderConnectionForm(request.POST or None, instance=connection)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"Saved connection {saved.name}. Check it to see that the provider answers.")
        _, warning = url_save_check(saved.base_url)
        for problem in filter(None, [warning, base_url_hint(saved)]):
            messages.warning(request, problem)
        return redirect("connectors:edit", pk=saved.pk)
    context = {
        "heading": f"Connection {connection.name}" if connection else "New connection",
        "form": form,
        "changes": history_of(connection) if connection else [],
        "models": connection.available_models if connection else [],
        "check_url": reverse("connectors:check", args=[connection.pk]) if connection else None,
    }
    return render(request, "_edit_page.html", context)


def base_url_hint(connection: ProviderConnection) -> str | None:
    """Mistral's (and most OpenAI-compatible) API roots end in /v1; without it every call is a 404."""
    path = urlsplit(connection.base_url).path.rstrip("/")
    if connection.provider == ProviderConnection.Provider.MISTRAL and not path.endswith("/v1"):
        return (
            f"{connection.base_url} does not end in /v1. Mistral's API root is https://api.mistral.ai/v1: "
            "without /v1 every call answers 404."
        )
    return None


@login_required
@permission_required("conversations.send_test", raise_exception=True)
@require_POST
def connection_check_view(request: HttpRequest, pk: int) -> HttpResponse:
    connection = get_object_or_404(ProviderConnection, pk=pk)
    result = connection_check(connection=connection)
    context = {"connection": connection, "result": result, "in_list": request.POST.get("where") == "list"}
    return render(request, "connectors/_check.html", context)


# Fields whose changes mean nothing to staff.
_UNTRACKED = {"id", "created_at"}


def history_of(instance) -> list[dict[str, object]]:
    """Each recorded change, newest first: who, when, and field: old → new (never a secret)."""
    records = list(instance.history.select_related("history_user").order_by("-history_date")[:50])
    changes = []
    for newer, older in zip(records, records[1:] + [None], strict=True):
        what = ["created"] if older is None else _differences(older, newer)
        changes.append({"when": newer.history_date, "who": newer.history_user, "what": what or ["saved, no change"]})
    return changes


# Secrets are never in the history: their replacement shows as a new time in a field of its own.
_SECRET_CHANGES = {
    "api_key_changed_at": "API key replaced",
    "token_changed_at": "token rotated",
    "callback_secret_changed_at": "signing secret replaced",
}


def _related_name(record, field) -> str | None:
    """What a historical record's foreign key pointed to, by name (None if it pointed nowhere)."""
    if getattr(record, field.attname) is None:
        return None
    try:
        return str(getattr(record, field.name))
    except ObjectDoesNotExist:
        return f"#{getattr(record, field.attname)} (deleted)"


def _differences(older, newer) -> list[str]:
    what = []
    for field in newer.tracked_fields:
        if field.name in _UNTRACKED:
            continue
        before, after = getattr(older, field.attname), getattr(newer, field.attname)
        if before == after:
            continue
        if field.is_relation:  # a connection, not its id
            before, after = _related_name(older, field), _related_name(newer, field)
        if field.name in _SECRET_CHANGES:
            what.append(_SECRET_CHANGES[field.name])
        elif field.name == "is_active":
            what.append("enabled" if after else "disabled")
        else:
            what.append(f"{field.name}: {before!r} → {after!r}")
    for field in getattr(newer, "_history_m2m_fields", []):  # an integration's templates and connections
        before, after = _m2m_names(older, field), _m2m_names(newer, field)
        if before != after:
            added, removed = sorted(after - before), sorted(before - after)
            change = "; ".join(
                filter(
                    None,
                    [f"added {', '.join(added)}" if added else "", f"removed {', '.join(removed)}" if removed else ""],
                )
            )
            what.append(f"{field.name}: {change}")
    return what


def _m2m_names(record, field) -> set[str]:
    """The names of what a historical record's many-to-many field held at that time."""
    target = field.related_model._meta.model_name
    return {str(getattr(row, target)) for row in getattr(record, field.name).select_related(target)}
