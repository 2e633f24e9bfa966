"""Fill the log with realistic calls for load tests: PostgreSQL COPY when available, bulk inserts otherwise."""

from __future__ import annotations

import json
import random
import time
from datetime import timedelta
from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError
from django.db import connection as db
from django.db import transaction
from django.utils import timezone

from connectors.errors import ErrorKind
from connectors.models import ProviderConnection
from conversations.models import Call, Conversation, Message, PromptTemplate

CALLS_PER_CONVERSATION = 3
ERRORS = [
    (ErrorKind.RATE_LIMITED, 429, "Rate limit exceeded"),
    (ErrorKind.AUTH, 401, "Unauthorized"),
    (ErrorKind.PROVIDER_ERROR, 503, "Service tier capacity exceeded for this model."),
    (ErrorKind.TIMEOUT, None, "No answer from api.mistral.ai within 30 s."),
]


class Command(BaseCommand):
    help = "Add N synthetic calls (in conversations of 3, in time order over --days) to the log, for load tests."

    def add_arguments(self, parser):
        parser.add_argument("--calls", type=int, default=100_000, help="How many calls to add (default 100,000).")
        parser.add_argument("--days", type=int, default=30, help="Spread them over this many past days.")
        parser.add_argument("--seed", type=int, default=7, help="Random seed, for repeatable data.")
        parser.add_argument(
            "--calls-per-conversation",
            type=int,
            default=CALLS_PER_CONVERSATION,
            help=f"Turns per conversation (default {CALLS_PER_CONVERSATION}); 1: one conversation per call.",
        )

    def handle(self, *args, calls: int, days: int, seed: int, calls_per_conversation: int, **options):
        connection = ProviderConnection.objects.order_by("pk").first()
        template = PromptTemplate.objects.order_by("pk").first()
        if not connection or not template:
            raise CommandError("Create a connection and a template first (add_connection, add_template).")
        started = time.monotonic()
        rows = _Rows(random.Random(seed), connection, template, calls, days, max(1, calls_per_conversation))  # noqa: S311 - test data
        with transaction.atomic():
            if db.vendor == "postgresql":
                _copy(rows)
            else:
                _bulk(rows)
        self.stdout.write(f"Added {calls:,} calls in {time.monotonic() - started:.1f} s.")


WAITING_SHARE = 0.002  # of conversations waiting for a person


class _Rows:
    """Synthetic conversations, customer messages and calls with ids chosen up front, so rows can be COPYed."""

    def __init__(self, rng, connection, template, calls, days, per_conversation):
        self.rng, self.connection, self.template, self.calls, self.days = rng, connection, template, calls, days
        self.per = per_conversation
        self.now = timezone.now()
        self.conv0 = _next_id(Conversation)
        self.msg0 = _next_id(Message)
        self.call0 = _next_id(Call)

    def at(self, n: int):
        """When the n-th call was queued: in id order over the period, as a real log grows, a little jittered."""
        span = self.days * 86400
        offset = span * (1 - n / self.calls) - self.rng.uniform(0, span / self.calls)
        return self.now - timedelta(seconds=max(0.0, offset))

    def conversations(self):
        for n in range((self.calls + self.per - 1) // self.per):
            at = self.at(n * self.per)
            contact = f"+33{self.rng.randrange(600000000, 799999999)}"
            # A few wait for a person, as in a real inbox (the inbox benchmark reads them).
            waiting = self.rng.random() < WAITING_SHARE
            state, reason = ("waiting", "asked") if waiting else ("bot", "")
            yield (
                self.conv0 + n, contact, self.connection.pk, self.template.pk, "{}", "", "{}", at, at,
                state, reason, at if waiting else None,
            )  # fmt: skip

    def messages_and_calls(self):
        for n in range(self.calls):
            conversation = self.conv0 + n // self.per
            at = self.at(n)
            text = f"Question {n}: where is my order?"
            message = (self.msg0 + n, conversation, "user", text, text, at, "")
            failed = self.rng.random() < 0.08
            latency = int(self.rng.lognormvariate(6.2, 0.5))
            prompt, completion = self.rng.randint(20, 400), self.rng.randint(10, 200)
            if failed:
                kind, status, error = self.rng.choice(ERRORS)
                outcome = ("failed", status, "", kind, error, None, None, None)
            else:
                cost = (Decimal(prompt) * Decimal("0.15") + Decimal(completion) * Decimal("0.60")) / 10**6
                outcome = ("succeeded", 200, f"Answer {n}", "", "", prompt, completion, round(cost, 6))
            status, http_status, reply, kind, error, p_tokens, c_tokens, cost = outcome
            call = (
                self.call0 + n,
                conversation,
                self.msg0 + n,
                None,
                self.connection.pk,
                1,
                1,
                status,
                self.connection.model,
                json.dumps({"model": self.connection.model}),
                http_status,
                "",
                reply,
                "stop" if reply else "",
                "",
                kind,
                error,
                latency,
                p_tokens,
                c_tokens,
                cost,
                at,
                at,
                at,
                at + timedelta(milliseconds=latency),
                "seed_logs",
            )
            yield message, call


CONVERSATION_COLUMNS = [
    "id",
    "contact",
    "connection_id",
    "template_id",
    "variables",
    "system_prompt",
    "overrides",
    "created_at",
    "updated_at",
    "state",
    "reason",
    "waiting_since",
]
MESSAGE_COLUMNS = ["id", "conversation_id", "role", "content", "customer_message", "created_at", "media_type"]
CALL_COLUMNS = [
    "id",
    "conversation_id",
    "message_id",
    "reply_id",
    "connection_id",
    "attempt",
    "connection_attempt",
    "status",
    "model",
    "request",
    "http_status",
    "response_body",
    "reply_text",
    "finish_reason",
    "provider_request_id",
    "error_kind",
    "error_message",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "queued_at",
    "run_after",
    "started_at",
    "finished_at",
    "worker",
]


def _next_id(model) -> int:
    last = model.objects.order_by("-pk").values_list("pk", flat=True).first()
    return (last or 0) + 1


def _copy(rows: _Rows) -> None:
    raw = db.connection  # the psycopg connection under Django's
    with raw.cursor() as cursor:
        with cursor.copy(f"COPY conversations_conversation ({', '.join(CONVERSATION_COLUMNS)}) FROM STDIN") as copy:
            for conversation in rows.conversations():
                copy.write_row(conversation)
        calls = []
        with cursor.copy(f"COPY conversations_message ({', '.join(MESSAGE_COLUMNS)}) FROM STDIN") as copy:
            for message, call in rows.messages_and_calls():
                copy.write_row(message)
                calls.append(call)
        with cursor.copy(f"COPY conversations_call ({', '.join(CALL_COLUMNS)}) FROM STDIN") as copy:
            for call in calls:
                copy.write_row(call)
        for table in ("conversations_conversation", "conversations_message", "conversations_call"):
            # Table names are the constants above, not input.
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")  # noqa: S608
        cursor.execute("ANALYZE conversations_conversation, conversations_message, conversations_call")


def _bulk(rows: _Rows) -> None:
    conversations = [
        Conversation(**dict(zip(CONVERSATION_COLUMNS, values, strict=True))) for values in rows.conversations()
    ]
    messages, calls = [], []
    for message, call in rows.messages_and_calls():
        messages.append(Message(**dict(zip(MESSAGE_COLUMNS, message, strict=True))))
        calls.append(Call(**dict(zip(CALL_COLUMNS, call, strict=True))))
    # bulk_create stamps auto_now(_add) fields with the current time: put the seeded times back after.
    for objects, fields in (
        (conversations, ["created_at", "updated_at"]),
        (messages, ["created_at"]),
        (calls, ["queued_at"]),
    ):
        if not objects:
            continue
        seeded = [[getattr(o, f) for f in fields] for o in objects]
        type(objects[0]).objects.bulk_create(objects, batch_size=2000)
        for o, values in zip(objects, seeded, strict=True):
            for field, value in zip(fields, values, strict=True):
                setattr(o, field, value)
        type(objects[0]).objects.bulk_update(objects, fields, batch_size=2000)
