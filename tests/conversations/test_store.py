"""The worker's two statements (conversations/store/worker.py), where their PostgreSQL form can go wrong."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from django.db import NotSupportedError, transaction
from django.db import connection as db
from django.utils import timezone

from conversations import delivery, services, store
from conversations.models import Call, Conversation, Message
from tests.api.conftest import auth

pytestmark = pytest.mark.django_db

VARIABLES = {"business_name": "Acme"}
postgresql_only = pytest.mark.skipif(db.vendor != "postgresql", reason="prepared statements are PostgreSQL's")


def queued_call(connection, text="Where is my order?"):
    """A queued call's rows, written directly: nothing is published to a broker a worker might listen on."""
    conversation = Conversation.objects.create(contact="+33600000001", connection=connection)
    message = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=text)
    return Call.objects.create(conversation=conversation, message=message, connection=connection)


def test_a_reply_never_moves_the_conversations_latest_activity_back(connection, template):
    call = services.call_send(connection=connection, template=template, customer_message="Hi", variables=VARIABLES)
    later = timezone.now() + timedelta(minutes=5)  # say the customer wrote again meanwhile (or clocks differ)
    Conversation.objects.filter(pk=call.conversation_id).update(updated_at=later)

    delivery.call_execute(call_id=call.pk)

    call.refresh_from_db()
    assert call.status == Call.Status.SUCCEEDED
    assert Conversation.objects.get(pk=call.conversation_id).updated_at == later


def test_a_failed_call_still_marks_the_conversation_active(connection, template):
    connection.model = "sandbox-server-error"
    connection.save()
    call = services.call_send(connection=connection, template=template, customer_message="Hi", variables=VARIABLES)
    before = Conversation.objects.get(pk=call.conversation_id).updated_at

    delivery.call_execute(call_id=call.pk)

    call.refresh_from_db()
    assert call.status == Call.Status.FAILED
    assert Conversation.objects.get(pk=call.conversation_id).updated_at > before


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_the_prepared_claim_survives_a_migration_that_changes_a_column(connection):
    first, second = queued_call(connection), queued_call(connection)
    assert store.call_claim(call_id=first.pk, worker="w", token=timezone.now())  # prepared on this connection
    settings = db.settings_dict
    migrate = dict(dbname=settings["NAME"], host=settings["HOST"], port=settings["PORT"], user=settings["USER"])
    # Another process migrates while this worker runs: the prepared claim now returns a different type.
    with psycopg.connect(**migrate, autocommit=True) as other:
        other.execute("ALTER TABLE conversations_conversation ALTER COLUMN contact TYPE varchar(250)")
        try:
            claimed = store.call_claim(call_id=second.pk, worker="w", token=timezone.now())
        finally:
            other.execute("ALTER TABLE conversations_conversation ALTER COLUMN contact TYPE varchar(200)")
            with db.cursor() as cursor:
                cursor.execute("DEALLOCATE ALL")

    assert claimed is not None and claimed.call.pk == second.pk
    assert Call.objects.get(pk=second.pk).status == Call.Status.RUNNING


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_statement_made_stale_inside_a_transaction_fails_once_then_works(connection):
    """The API reads the contact's conversation inside its transaction: a migration that changes a column it
    reads aborts that transaction, and the connection (kept by the pool) must not fail so for ever."""
    from conversations.api.tokens import integration_create
    from tests.factories import TemplateFactory

    template = TemplateFactory(name="Support")
    integration, _ = integration_create(name="Bot", templates=[template], connections=[connection])
    conversation = Conversation.objects.create(
        contact="+33600000001", connection=connection, template=template, integration=integration
    )

    def look_up():
        with transaction.atomic():
            return store.conversation_latest(conversation.integration, conversation.contact,
                                             conversation.template, conversation.connection)  # fmt: skip

    look_up()  # prepared on this connection
    settings = db.settings_dict
    migrate = dict(dbname=settings["NAME"], host=settings["HOST"], port=settings["PORT"], user=settings["USER"])
    with psycopg.connect(**migrate, autocommit=True) as other:
        other.execute("ALTER TABLE conversations_conversation ALTER COLUMN contact TYPE varchar(250)")
        try:
            with pytest.raises(NotSupportedError):
                look_up()
            found = look_up()  # the same connection, its prepared statements forgotten first
        finally:
            other.execute("ALTER TABLE conversations_conversation ALTER COLUMN contact TYPE varchar(200)")
            with db.cursor() as cursor:
                cursor.execute("DEALLOCATE ALL")

    assert found is not None and found.pk == conversation.pk


def _synchronous_commit() -> str:
    with db.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_workers_claim_commits_without_waiting_for_the_disk_and_nothing_else_does(connection):
    first, second = queued_call(connection), queued_call(connection)
    assert store.call_claim(call_id=first.pk, worker="w", token=timezone.now())  # autocommit, as in a worker
    # What this connection ran: the claim turned synchronous_commit off for itself.
    assert _prepared("%claimed AS%synchronous_commit%") == 1
    assert _synchronous_commit() == "on"  # and only for itself: the outcome's transaction waits again
    with transaction.atomic():  # a claim inside someone else's transaction leaves that transaction's commit alone
        assert store.call_claim(call_id=second.pk, worker="w", token=timezone.now())
        assert _synchronous_commit() == "on"


@postgresql_only
@pytest.mark.django_db(transaction=True)
def test_a_relayed_chat_request_commits_without_waiting_for_the_disk_until_it_says_queued(
    client, integration_token, settings, published
):
    """store.chat_accept: its commit skips the flush (the outcome's commit makes it durable before any
    answer); the answer that says "queued" without an outcome flushes first (store.durable)."""
    settings.API_CHAT_WAIT_SECONDS = 0  # no worker answers here: the request ends with "no reply in time"
    _, token = integration_token
    body = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Where is my order?"}]}

    response = client.post("/api/v1/chat/completions", body, content_type="application/json", **auth(token))
    assert Call.objects.get().status == Call.Status.QUEUED

    assert response.status_code == 503 and "queued as call" in response.json()["error"]["message"]
    # Off for its own commit only (each length of conversation is a statement of its own: this one has one turn).
    assert _prepared("%turns AS%synchronous_commit%") >= 1 and _synchronous_commit() == "on"
    assert _prepared("%txid_current()%") == 1  # an id for this transaction: its commit waits for the disk


def _prepared(like: str) -> int:
    """Statements this connection prepared (the hand-written ones are bound on the server) that match `like`."""
    with db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [like])
        return cursor.fetchone()[0]
