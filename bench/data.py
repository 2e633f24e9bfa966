"""Rows for the benchmarks, created the fast way (bulk inserts), and the database made ready."""

from __future__ import annotations

from django.core.management import call_command
from django.db import connection as db
from django.utils import timezone

from connectors.models import ProviderConnection
from conversations.models import Call, Conversation, Message, PromptTemplate


def prepare_database() -> None:
    """Create the benchmark database if it is missing, migrate it, and empty the log tables."""
    if db.vendor == "postgresql":
        # Asked from the server's maintenance database first: connecting to a missing database would set
        # the connection pool retrying (and logging) in the background.
        name = db.settings_dict["NAME"]
        with db._nodb_cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)
    clear_logs()


def clear_logs() -> None:
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute("TRUNCATE conversations_call, conversations_message, conversations_conversation CASCADE")
    else:
        Call.objects.all().delete()
        Message.objects.all().delete()
        Conversation.objects.all().delete()


def connection_for(base_url: str, name: str = "Bench", **fields) -> ProviderConnection:
    connection = ProviderConnection.objects.filter(name=name).first() or ProviderConnection(name=name)
    connection.base_url = base_url
    connection.model = fields.pop("model", "mistral-small-latest")
    for key, value in {"timeout_seconds": 30.0, "max_attempts": 1, **fields}.items():
        setattr(connection, key, value)
    connection.set_api_key("sb-bench-key-000000")
    connection.save()
    return connection


def template() -> PromptTemplate:
    return PromptTemplate.objects.update_or_create(
        name="Bench", defaults={"system_prompt": "You are the support assistant of Acme. Answer briefly."}
    )[0]


def queued_calls(connection: ProviderConnection, count: int, text: str = "Where is my order {n}?") -> list[int]:
    """`count` conversations, each with a customer message and a queued call, in a few bulk inserts."""
    tpl = template()
    now = timezone.now()
    conversations = Conversation.objects.bulk_create(
        Conversation(
            contact=f"+3361000{n:05d}",
            connection=connection,
            template=tpl,
            system_prompt="You are the support assistant of Acme. Answer briefly.",
        )
        for n in range(count)
    )
    messages = Message.objects.bulk_create(
        Message(conversation=c, role=Message.Role.USER, content=text.format(n=n)) for n, c in enumerate(conversations)
    )
    calls = Call.objects.bulk_create(
        Call(conversation=c, message=m, connection=connection, model=connection.model, run_after=now)
        for c, m in zip(conversations, messages, strict=True)
    )
    if calls and calls[0].pk is None:  # SQLite before returning ids: read them back
        return list(Call.objects.order_by("-id").values_list("pk", flat=True)[:count])[::-1]
    return [c.pk for c in calls]


def finished(call_ids: list[int]) -> int:
    """How many of these calls have finished. Polled while a benchmark runs, so kept cheap: a range scan
    when the ids are consecutive (bulk-created), not a thousands-long IN list counted against the database."""
    done = Call.objects.filter(status__in=[Call.Status.SUCCEEDED, Call.Status.FAILED])
    if call_ids and call_ids == list(range(call_ids[0], call_ids[0] + len(call_ids))):
        return done.filter(pk__range=(call_ids[0], call_ids[-1])).count()
    return done.filter(pk__in=call_ids).count()
