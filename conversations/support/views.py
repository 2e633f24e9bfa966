"""The pages support staff work in: the inbox of conversations waiting for a person, and the actions on one
conversation (take over, hand back, reply, feedback). The services they call keep the rules."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import OuterRef, Q, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ..models import Conversation, Message
from . import services

HANDLE = "conversations.handle_conversation"
INBOX_ROWS = 200  # the oldest first; the page says how many more there are


class ReplyForm(forms.Form):
    text = forms.CharField(max_length=20_000, strip=True, widget=forms.Textarea(attrs={"rows": 3}))


class FeedbackForm(forms.Form):
    good = forms.ChoiceField(choices=[("yes", "Good"), ("no", "Not good")])
    note = forms.CharField(max_length=2000, required=False)


def _form_problem(form: forms.Form) -> str:
    return "; ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())


TABS = {
    "waiting": ("Waiting", Q(state=Conversation.State.WAITING)),
    "mine": ("Mine", Q(state=Conversation.State.HUMAN)),  # narrowed to the user in the view
    "held": ("With a person", Q(state=Conversation.State.HUMAN)),
}


@login_required
@permission_required("conversations.view_conversation", raise_exception=True)
def inbox(request: HttpRequest) -> HttpResponse:
    """Conversations waiting for a person, oldest first, with why, their last message and how long they wait."""
    tab = request.GET.get("tab", "waiting")
    tab = tab if tab in TABS else "waiting"
    conversations = Conversation.objects.filter(TABS[tab][1])
    if tab == "mine":
        conversations = conversations.filter(assigned_to=request.user)
    said = Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.USER).order_by("-created_at", "-id")
    rows = (
        conversations.select_related("channel", "integration", "assigned_to")
        .annotate(last_message=Subquery(said.values("customer_message")[:1]))  # for the page's rows only
        .order_by("waiting_since", "id")[:INBOX_ROWS]
    )
    rows = list(rows)
    total = len(rows) if len(rows) < INBOX_ROWS else conversations.count()  # the partial index: cheap
    context = {"rows": rows, "total": total, "tab": tab, "tabs": {key: label for key, (label, _) in TABS.items()}}
    if request.headers.get("HX-Request"):
        return render(request, "conversations/_inbox_rows.html", context)
    return render(request, "conversations/inbox.html", context)


@login_required
def inbox_count(request: HttpRequest) -> HttpResponse:
    """The navigation's count of conversations waiting for a person (refreshed by htmx)."""
    return render(request, "conversations/_inbox_count.html", {"inbox_waiting": waiting_count(request)})


def waiting_count(request: HttpRequest) -> int | None:
    if not request.user.has_perm("conversations.view_conversation"):
        return None
    return Conversation.objects.filter(state=Conversation.State.WAITING).count()  # the partial index: a few rows


def context(request: HttpRequest) -> dict[str, object]:
    """A context processor: the count in the navigation bar, on every page."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"inbox_waiting": waiting_count(request)}


@login_required
@permission_required(HANDLE, raise_exception=True)
@require_POST
def take_over(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk)
    if conversation.is_test:
        messages.error(request, "A test conversation has no customer to take over from the bot.")
    else:
        try:
            services.conversation_take_over(
                conversation=conversation,
                by=request.user,
                seen_holder_id=_holder(request),
                assigned="assign" in request.POST,
            )
        except services.SupportRefused as refused:
            messages.error(request, str(refused))
            return redirect("conversations:detail", pk=pk)
        messages.success(request, "You hold this conversation: the bot stays silent until you hand it back.")
        # Straight to the reply box: on a phone it is a long scroll below the transcript.
        return redirect(f"{conversation_url(pk)}#reply")
    return redirect("conversations:detail", pk=pk)


def _holder(request: HttpRequest) -> int | None:
    """Who held the conversation on the page the form came from (its `holder` field; none: nobody)."""
    try:
        return int(request.POST.get("holder", ""))
    except ValueError:
        return None


@login_required
@permission_required(HANDLE, raise_exception=True)
@require_POST
def hand_back(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation, pk=pk)
    try:
        answering = services.conversation_hand_back(
            conversation=conversation, by=request.user, seen_holder_id=_holder(request)
        )
    except services.SupportRefused as refused:
        messages.error(request, str(refused))
        return redirect("conversations:detail", pk=pk)
    if answering is not None:
        messages.success(
            request,
            "Handed back: the bot is answering the customer's open question, "
            f"“{(answering.customer_message or answering.content)[:200]}”.",
        )
    else:
        messages.success(request, "Handed back: the bot answers the customer's next message.")
    return redirect("conversations:detail", pk=pk)


@login_required
@permission_required(HANDLE, raise_exception=True)
@require_POST
def reply(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(Conversation.objects.select_related("integration"), pk=pk)
    form = ReplyForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"The reply was not sent: {_form_problem(form)}")
        return redirect(f"{conversation_url(pk)}#reply")
    try:
        services.staff_reply(conversation=conversation, by=request.user, text=form.cleaned_data["text"])
    except services.SupportRefused as refused:
        messages.error(request, str(refused))
    return redirect(f"{conversation_url(pk)}#reply")


@login_required
@permission_required(HANDLE, raise_exception=True)
@require_POST
def feedback(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(Message, pk=pk)
    form = FeedbackForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"The feedback was not saved: {_form_problem(form)}")
        return redirect(f"{conversation_url(message.conversation_id)}#message-{message.pk}")
    try:
        services.feedback_give(
            message=message, by=request.user, good=form.cleaned_data["good"] == "yes", note=form.cleaned_data["note"]
        )
    except services.SupportRefused as refused:
        messages.error(request, str(refused))
    return redirect(f"{conversation_url(message.conversation_id)}#message-{message.pk}")


def conversation_url(pk: int) -> str:
    from django.urls import reverse

    return reverse("conversations:detail", args=[pk])
