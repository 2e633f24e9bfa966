"""Integrations in the dashboard, for Admins: create one, change what it may use, disable it, rotate its token.

A new token or signing secret is shown once, in the answer to the POST that made it (never stored in a
session or a message cookie), with `Cache-Control: no-store`; afterwards only its first characters. That
page swaps its history entry for the integration's own page (static/js/switchboard.js), so a reload does not
post the form again.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from connectors.models import ProviderConnection
from connectors.safety import url_save_check
from connectors.views import history_of

from ..models import Integration, PromptTemplate
from . import tokens

NO_CONNECTION = (
    "Choose at least one connection: an integration without one cannot send anything, so every request "
    "would be refused."
)
NO_TEMPLATE = (
    "It may use no template yet, so POST /api/v1/messages refuses its requests; only /api/v1/chat/completions "
    "works. Tick the templates its chatbot sends with."
)


class IntegrationForm(forms.ModelForm):
    templates = forms.ModelMultipleChoiceField(
        queryset=PromptTemplate.objects.all(), widget=forms.CheckboxSelectMultiple, required=False
    )
    connections = forms.ModelMultipleChoiceField(
        queryset=ProviderConnection.objects.all(),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": NO_CONNECTION},
    )

    class Meta:
        model = Integration
        fields = ["name", "templates", "connections", "default_connection", "callback_url"]
        labels = {"callback_url": "Callback URL"}

    def clean(self):
        data = super().clean()
        default, allowed = data.get("default_connection"), data.get("connections")
        if default and allowed is not None and default not in allowed:
            self.add_error("default_connection", "The default connection must be one of the connections it may use.")
        return data


@login_required
@permission_required("conversations.view_integration", raise_exception=True)
def integration_list(request: HttpRequest) -> HttpResponse:
    integrations = Integration.objects.select_related("default_connection").prefetch_related("templates")
    return render(request, "conversations/integration_list.html", {"integrations": integrations})


@login_required
@permission_required("conversations.add_integration", raise_exception=True)
def integration_new(request: HttpRequest) -> HttpResponse:
    form = IntegrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        integration, token = tokens.integration_create(
            name=data["name"],
            templates=list(data["templates"]),
            connections=list(data["connections"]),
            default_connection=data["default_connection"],
            callback_url=data["callback_url"],
        )
        secret = tokens.crypto.decrypt(integration.callback_secret_encrypted) if integration.callback_url else ""
        _warn_if_unresolved(request, integration)
        return shown_once(request, integration, token=token, secret=secret)
    return render(request, "_edit_page.html", {"heading": "New integration", "form": form})


@login_required
@permission_required("conversations.change_integration", raise_exception=True)
def integration_edit(request: HttpRequest, pk: int) -> HttpResponse:
    integration = get_object_or_404(Integration, pk=pk)
    had_callback = bool(integration.callback_url)
    form = IntegrationForm(request.POST or None, instance=integration)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"Saved integration {saved.name}.")
        _warn_if_unresolved(request, saved)
        if saved.callback_url and not had_callback and not saved.callback_secret_encrypted:
            return shown_once(request, saved, secret=tokens.integration_new_signing_secret(integration=saved))
        return redirect("conversations:integration_edit", pk=saved.pk)
    context = {"integration": integration, "form": form, "changes": history_of(integration)}
    return render(request, "conversations/integration_edit.html", context)


@login_required
@permission_required("conversations.change_integration", raise_exception=True)
@require_POST
def integration_rotate_token(request: HttpRequest, pk: int) -> HttpResponse:
    integration = get_object_or_404(Integration, pk=pk)
    return shown_once(request, integration, token=tokens.integration_rotate_token(integration=integration))


@login_required
@permission_required("conversations.change_integration", raise_exception=True)
@require_POST
def integration_signing_secret(request: HttpRequest, pk: int) -> HttpResponse:
    integration = get_object_or_404(Integration, pk=pk)
    return shown_once(request, integration, secret=tokens.integration_new_signing_secret(integration=integration))


@login_required
@permission_required("conversations.change_integration", raise_exception=True)
@require_POST
def integration_enabled(request: HttpRequest, pk: int) -> HttpResponse:
    integration = get_object_or_404(Integration, pk=pk)
    enabled = request.POST.get("enabled") == "yes"
    tokens.integration_set_enabled(integration=integration, enabled=enabled)
    if enabled:
        messages.success(request, f"Enabled {integration.name}: its token works again.")
    else:
        messages.warning(request, f"Disabled {integration.name}: its token is refused from now on (401).")
    return redirect("conversations:integration_edit", pk=integration.pk)


def shown_once(request: HttpRequest, integration: Integration, *, token: str = "", secret: str = "") -> HttpResponse:
    response = render(
        request,
        "conversations/integration_secret.html",
        {
            "integration": integration,
            "token": token,
            "secret": secret,
            "api_base": request.build_absolute_uri("/api/v1").rstrip("/"),
        },
    )
    response["Cache-Control"] = "no-store"
    return response


def _warn_if_unresolved(request: HttpRequest, integration: Integration) -> None:
    if not integration.templates.exists():
        messages.warning(request, NO_TEMPLATE)
    if integration.callback_url:
        _, warning = url_save_check(integration.callback_url)
        if warning:
            messages.warning(request, warning)
