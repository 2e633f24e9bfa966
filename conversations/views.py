from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from . import services
from .forms import ReplyForm, TestSendForm
from .models import Call, Conversation, PromptTemplate


def _chosen_template(request: HttpRequest) -> PromptTemplate | None:
    template_id = request.POST.get("template") or request.GET.get("template")
    templates = PromptTemplate.objects.all()
    if template_id and template_id.isdigit():
        return templates.filter(pk=template_id).first() or templates.first()
    return templates.first()


@login_required
def test_send(request: HttpRequest) -> HttpResponse:
    """Send one customer message through a connection and template, and watch the call finish."""
    template = _chosen_template(request)
    if request.method == "POST":
        form = TestSendForm(request.POST, template=template)
        if form.is_valid():
            try:
                call = services.call_send(
                    connection=form.cleaned_data["connection"],
                    template=form.cleaned_data["template"],
                    customer_message=form.cleaned_data["customer_message"],
                    variables=form.variables(),
                )
            except (services.TemplateVariableError, services.SendRefused) as error:
                form.add_error(None, str(error))
            else:
                return redirect(f"{reverse('conversations:test_send')}?call={call.pk}&template={template.pk}")
    else:
        form = TestSendForm(template=template, initial={"template": template})
    call_id = request.GET.get("call", "")
    call = Call.objects.filter(pk=call_id).select_related("connection").first() if call_id.isdigit() else None
    return render(request, "conversations/test_send.html", {"form": form, "call": call})


@login_required
def variable_fields(request: HttpRequest) -> HttpResponse:
    """The template's variable inputs, swapped in when staff pick another template."""
    form = TestSendForm(template=_chosen_template(request))
    return render(request, "conversations/_variable_fields.html", {"form": form})


@login_required
def call_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The outcome of a customer message so far: its newest attempt, with the earlier ones summarised."""
    call = get_object_or_404(Call, pk=pk).latest_attempt()
    earlier = Call.objects.filter(message_id=call.message_id, attempt__lt=call.attempt).order_by("attempt")
    return render(request, "conversations/_call.html", {"call": call, "earlier": earlier})


@login_required
def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation.objects.select_related("connection", "template"), pk=pk)
    return _render_detail(request, conversation, ReplyForm())


def _render_detail(
    request: HttpRequest, conversation: Conversation, form: ReplyForm, status: int = 200
) -> HttpResponse:
    context = {
        "conversation": conversation,
        "turns": conversation.messages.all(),
        "calls": conversation.calls.select_related("connection").order_by("queued_at", "id"),
        "form": form,
    }
    return render(request, "conversations/conversation_detail.html", context, status=status)


@login_required
@require_POST
def conversation_reply(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk)
    form = ReplyForm(request.POST)
    if form.is_valid():
        try:
            services.conversation_reply(
                conversation=conversation, customer_message=form.cleaned_data["customer_message"]
            )
        except (services.TemplateVariableError, services.SendRefused) as error:
            form.add_error(None, str(error))
        else:
            return redirect("conversations:detail", pk=conversation.pk)
    return _render_detail(request, conversation, form, status=400)
