"""The conversation and call logs: filtered lists, one conversation as a transcript, streamed exports."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator

from django.contrib.auth.decorators import login_required, permission_required
from django.db.models import F
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone

from config.errors import error_page

from ..filters import CallFilter, ConversationFilter, PageRefused, page
from ..forms import ReplyForm
from ..models import Call, Conversation
from ..support.services import unreachable_reason

EXPORT_FIELDS = [
    "id",
    "queued_at",
    "finished_at",
    "contact",
    "connection",
    "template",
    "model",
    "attempt",
    "status",
    "http_status",
    "error_kind",
    "error_message",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "customer_message",
    "reply_text",
]


def _querystring_without_page(request: HttpRequest) -> str:
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


def _log_page(request: HttpRequest, filterset, template: str, rows_name: str) -> HttpResponse:
    """A filtered log page: one page of rows and whether another follows, never a count of the table."""
    try:
        rows, number, has_next = page(filterset.qs, request.GET.get("page"))
    except PageRefused as refused:
        return error_page(400, "No such page", str(refused))
    context = {
        "filter": filterset,
        rows_name: rows,
        "page": number,
        "has_next": has_next,
        "query": _querystring_without_page(request),
    }
    return render(request, template, context)


@login_required
@permission_required("conversations.view_call", raise_exception=True)
def call_list(request: HttpRequest) -> HttpResponse:
    calls = Call.objects.select_related("connection", "conversation__template").order_by("-queued_at", "-id")
    return _log_page(request, CallFilter(request.GET, queryset=calls), "conversations/call_list.html", "calls")


def with_inbox_columns(conversations):
    """What a support inbox shows per conversation: the customer's last message, how it stands (the newest
    attempt's status) and how many messages they sent. Subqueries run only for the page's rows."""
    from django.db.models import Count, OuterRef, Subquery

    from ..models import Message

    said = Message.objects.filter(conversation=OuterRef("pk"), role=Message.Role.USER)
    return conversations.annotate(
        last_message=Subquery(said.order_by("-created_at", "-id").values("customer_message")[:1]),
        outcome=Subquery(
            Call.objects.filter(conversation=OuterRef("pk")).order_by("-queued_at", "-id").values("status")[:1]
        ),
        message_count=Subquery(said.order_by().values("conversation").annotate(n=Count("id")).values("n")[:1]),
    )


@login_required
@permission_required("conversations.view_conversation", raise_exception=True)
def conversation_list(request: HttpRequest) -> HttpResponse:
    conversations = with_inbox_columns(
        Conversation.objects.select_related("connection", "template", "assigned_to").order_by("-updated_at", "-id")
    )
    filterset = ConversationFilter(request.GET, queryset=conversations)
    return _log_page(request, filterset, "conversations/conversation_list.html", "conversations")


@login_required
@permission_required("conversations.view_conversation", raise_exception=True)
def conversation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    conversation = get_object_or_404(
        Conversation.objects.select_related("connection", "template", "channel", "integration", "assigned_to"), pk=pk
    )
    return render_conversation(request, conversation, ReplyForm())


def render_conversation(
    request: HttpRequest, conversation: Conversation, form: ReplyForm, status: int = 200
) -> HttpResponse:
    """The transcript as it happened: the customer's messages, the bot's replies (or their final errors), what
    the team wrote, what Switchboard sent by itself, and who took the conversation when; then every attempt."""
    calls = list(
        conversation.calls.select_related("connection")
        .prefetch_related("callback_attempts", "whatsapp_sends")
        .order_by("message_id", "attempt")
    )
    by_message: dict[int, list[Call]] = {}
    for call in calls:
        by_message.setdefault(call.message_id, []).append(call)
    replies = {call.reply_id: call for call in calls if call.reply_id}
    messages = list(conversation.messages.select_related("sent_by").prefetch_related("feedback__by"))
    turns, timeline = [], []
    for message in messages:
        timeline.append({"kind": message.role, "message": message, "at": message.created_at})
        if message.role == message.Role.ASSISTANT:
            timeline[-1]["call"] = replies.get(message.pk)
            timeline[-1]["mine"] = next((f for f in message.feedback.all() if f.by_id == request.user.pk), None)
        if message.role != message.Role.USER:
            continue
        attempts = by_message.get(message.pk, [])
        final = attempts[-1] if attempts else None
        turns.append({"message": message, "attempts": attempts, "final": final})
        if final and final.status == Call.Status.FAILED:
            timeline.append({"kind": "failed", "call": final, "at": final.finished_at or message.created_at})
        elif final and not final.finished:
            timeline.append({"kind": "pending", "call": final, "at": message.created_at})
    for event in conversation.events.select_related("by"):
        timeline.append({"kind": "event", "event": event, "at": event.created_at})
    timeline.sort(key=lambda item: item["at"])  # stable: what follows a message stays after it
    pending = any(turn["final"] and not turn["final"].finished for turn in turns)
    context = {
        "conversation": conversation,
        "turns": turns,
        "timeline": timeline,
        "form": form,
        "pending": pending,
        "opted_out": _opted_out(conversation),
        "can_handle": request.user.has_perm("conversations.handle_conversation") and not conversation.is_test,
        "unreachable": unreachable_reason(conversation),
    }
    return render(request, "conversations/conversation_detail.html", context, status=status)


def _opted_out(conversation: Conversation):
    from ..models import WhatsAppContact

    if conversation.channel_id is None:
        return None
    contact = WhatsAppContact.objects.filter(channel_id=conversation.channel_id, contact=conversation.contact).first()
    return contact.opted_out_at if contact else None


def _export_rows(request: HttpRequest) -> Iterator[dict[str, object]]:
    calls = Call.objects.order_by("-queued_at", "-id")
    qs = CallFilter(request.GET, queryset=calls).qs.annotate(
        contact=F("conversation__contact"),
        connection_name=F("connection__name"),
        template=F("conversation__template__name"),
        customer_message=F("message__customer_message"),
    )
    fields = [f if f != "connection" else "connection_name" for f in EXPORT_FIELDS]
    for row in qs.values(*fields).iterator(chunk_size=2000):
        row["connection"] = row.pop("connection_name")
        yield {field: row[field] for field in EXPORT_FIELDS}


def _cell(value: object) -> object:
    """A CSV cell that a spreadsheet will not run: customers' text starting with = + - @ becomes literal."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class _Echo:
    """csv.writer writes into this and gets the line back, so rows stream instead of piling up."""

    def write(self, value: str) -> str:
        return value


def _filename(extension: str) -> str:
    return f"switchboard-calls-{timezone.now():%Y%m%d-%H%M%S}.{extension}"


@login_required
@permission_required("conversations.view_call", raise_exception=True)
def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield writer.writerow(EXPORT_FIELDS)
        for row in _export_rows(request):
            yield writer.writerow([_cell(row[f]) for f in EXPORT_FIELDS])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename("csv")}"'
    return response


@login_required
@permission_required("conversations.view_call", raise_exception=True)
def export_jsonl(request: HttpRequest) -> StreamingHttpResponse:
    def lines() -> Iterator[str]:
        for row in _export_rows(request):
            yield json.dumps(row, default=str, ensure_ascii=False) + "\n"

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename("jsonl")}"'
    return response
