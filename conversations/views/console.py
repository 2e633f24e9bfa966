"""The test console: compose a customer message, preview the exact request, send it, watch it finish."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from connectors.errors import ProviderError
from connectors.models import ModelPrice
from connectors.providers import adapter_for

from .. import services
from ..forms import VARIABLE_PREFIX, ReplyForm, TestSendForm
from ..models import Call, Conversation, PromptTemplate
from ..rendering import TemplateVariableError

SEND_PERMISSION = "conversations.send_test"


def _chosen_template(request: HttpRequest) -> PromptTemplate | None:
    template_id = request.POST.get("template") or request.GET.get("template")
    templates = PromptTemplate.objects.all()
    if template_id and str(template_id).isascii() and str(template_id).isdigit():
        return templates.filter(pk=template_id).first() or templates.first()
    return templates.first()


def _initial_from(call: Call) -> dict[str, object]:
    """The inputs of an earlier send, for "Send again": that turn's message, whichever turn it was."""
    conversation = call.conversation
    message = call.message
    initial = {
        "connection": conversation.connection_id,
        "template": conversation.template_id,
        "customer_message": message.customer_message or message.content,
        **conversation.overrides,
    }
    initial.update({VARIABLE_PREFIX + name: value for name, value in conversation.variables.items()})
    return initial


@login_required
@permission_required(SEND_PERMISSION, raise_exception=True)
def test_send(request: HttpRequest) -> HttpResponse:
    """Send one customer message through a connection and template, and watch the call finish."""
    if request.method == "POST":
        template = _chosen_template(request)
        form = TestSendForm(request.POST, template=template)
        if form.is_valid():
            try:
                call = services.call_send(
                    connection=form.cleaned_data["connection"],
                    template=form.cleaned_data["template"],
                    customer_message=form.cleaned_data["customer_message"],
                    variables=form.variables(),
                    overrides=form.overrides(),
                )
            except (services.TemplateVariableError, services.SendRefused) as error:
                form.add_error(None, str(error))
            else:
                # The next visit starts from the same connection and template.
                request.session["console"] = {
                    "connection": call.connection_id,
                    "template": call.conversation.template_id,
                }
                # At #result: on a phone the result is below the whole form.
                return redirect(f"{reverse('conversations:test_send')}?call={call.pk}&again={call.pk}#result")
        call = None
    else:
        call = _call_from(request.GET.get("call", ""))
        call = call.latest_attempt() if call else None  # the message's outcome, not its first attempt's
        again = _call_from(request.GET.get("again", ""))
        initial = _initial_from(again) if again else dict(request.session.get("console", {})) or _last_that_worked()
        template = (
            PromptTemplate.objects.filter(pk=initial.get("template")).first() if initial.get("template") else None
        )
        template = template if request.GET.get("template") is None else None
        template = template or _chosen_template(request)
        form = TestSendForm(template=template, initial={"template": template, **initial})
    known_models = ModelPrice.objects.values_list("model", flat=True)
    context = {"form": form, "call": call, "earlier": _earlier_attempts(call), "known_models": known_models}
    return render(request, "conversations/test_send.html", context)


def _last_that_worked() -> dict[str, int]:
    """A first visit starts from the connection and template of the newest answered message, not from the
    first names in the alphabet (which may be a connection just added and not working yet)."""
    last = (
        Call.objects.filter(status=Call.Status.SUCCEEDED, conversation__template__isnull=False)
        .order_by("-id")
        .values("connection_id", "conversation__template_id")
        .first()
    )
    return {"connection": last["connection_id"], "template": last["conversation__template_id"]} if last else {}


def _earlier_attempts(call: Call | None):
    if call is None or call.attempt == 1:
        return []
    return (
        Call.objects.filter(message_id=call.message_id, attempt__lt=call.attempt)
        .select_related("connection")
        .order_by("attempt")
    )


def _call_from(value: str) -> Call | None:
    if not (value.isascii() and value.isdigit() and len(value) <= 18):
        return None
    return Call.objects.filter(pk=value).select_related("connection", "conversation", "message").first()


@login_required
@permission_required(SEND_PERMISSION, raise_exception=True)
def variable_fields(request: HttpRequest) -> HttpResponse:
    """The template's variable inputs, swapped in when staff pick another template."""
    form = TestSendForm(template=_chosen_template(request))
    return render(request, "conversations/_variable_fields.html", {"form": form})


@login_required
@permission_required(SEND_PERMISSION, raise_exception=True)
@require_POST
def preview(request: HttpRequest) -> HttpResponse:
    """The exact request the worker would send for the form as it is now, with the key masked."""
    form = TestSendForm(request.POST, template=_chosen_template(request))
    context: dict[str, object] = {}
    form.is_valid()  # partial input is fine: show what can be shown
    data = form.cleaned_data
    connection, template = data.get("connection"), data.get("template")
    if connection and template:
        # Shown before the form is complete: what is still empty appears as ‹its name›, listed above the body.
        variables = form.variables()
        missing = [name for name in template.variables if not variables.get(name)]
        variables.update({name: f"‹{name}›" for name in missing})
        customer_message = data.get("customer_message") or ""
        if not customer_message.strip():
            missing.append("customer message")
            customer_message = "‹customer message›"
        context["still_needed"] = missing
        try:
            system, user = template.render(variables=variables, customer_message=customer_message)
        except TemplateVariableError as error:
            context["problem"] = str(error)
        else:
            wanted = services.request_settings(connection, services.clean_overrides(form.overrides()))
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
            adapter = adapter_for(connection)
            try:
                body = adapter.body(messages=messages, **wanted)
            except ProviderError as error:
                context["problem"] = error.message
            else:
                context.update(
                    url=adapter.url,
                    key_hint=connection.key_hint,
                    body=json.dumps(body, indent=2, ensure_ascii=False),
                )
    return render(request, "conversations/_preview.html", context)


@login_required
@permission_required("conversations.view_call", raise_exception=True)
def call_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The outcome of a customer message so far: its newest attempt, with the earlier ones summarised."""
    call = get_object_or_404(Call, pk=pk).latest_attempt()
    context = {"call": call, "earlier": _earlier_attempts(call), "console": request.GET.get("in") != "transcript"}
    return render(request, "conversations/_call.html", context)


@login_required
@permission_required(SEND_PERMISSION, raise_exception=True)
@require_POST
def conversation_reply(request: HttpRequest, pk: int) -> HttpResponse:
    """Continue a conversation: the next customer message, sent with the history like the chatbot would."""
    from .logs import render_conversation

    conversation = get_object_or_404(Conversation, pk=pk)
    form = ReplyForm(request.POST)
    if not conversation.is_test:
        form.add_error(None, "This conversation is with a real customer; test in the console instead.")
    elif form.is_valid():
        try:
            services.conversation_reply(
                conversation=conversation, customer_message=form.cleaned_data["customer_message"]
            )
        except (services.TemplateVariableError, services.SendRefused) as error:
            form.add_error(None, str(error))
        else:
            return redirect("conversations:detail", pk=conversation.pk)
    return render_conversation(request, conversation, form, status=400)
