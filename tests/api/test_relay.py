"""The API's trips to the database (conversations/store/): what a chat request leaves, on either database.

On PostgreSQL each trip is one hand-written statement; on SQLite the ORM takes the same steps. Both must leave
the same rows and send the provider the same conversation.
"""

from __future__ import annotations

import json

import pytest
from django.db import OperationalError
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conversations import store
from conversations.api import openai_compat
from conversations.models import Call, Conversation, Message
from tests.api.conftest import auth
from tests.factories import ConnectionFactory
from tests.helpers import execute_now

pytestmark = pytest.mark.django_db

HISTORY = [
    {"role": "system", "content": "You answer for Acme."},
    {"role": "user", "content": "Do you deliver?"},
    {"role": "assistant", "content": "Yes, Monday to Friday."},
    {"role": "user", "content": "And on Sunday?"},
]


def relay(client, token: str, body: dict):
    return client.post("/api/v1/chat/completions", json.dumps(body), content_type="application/json", **auth(token))


def test_a_chat_request_is_stored_and_sent_in_order(
    client, integration_token, settings, published, django_capture_on_commit_callbacks
):
    settings.API_CHAT_WAIT_SECONDS = 0  # answer at once: the call is run below, in this process
    _, token = integration_token

    with django_capture_on_commit_callbacks(execute=True):  # the test's transaction stands for the commit
        response = relay(
            client, token, {"model": "mistral-large-latest", "messages": HISTORY, "user": "+4915112345678"}
        )

    assert response.status_code == 503 and "queued as call" in response.json()["error"]["message"]
    call = Call.objects.get()
    assert published == [("conversations.execute_call", call.pk, None)]
    conversation = Conversation.objects.get()
    assert (conversation.contact, conversation.system_prompt) == ("+4915112345678", "You answer for Acme.")
    assert conversation.overrides == {"model": "mistral-large-latest"}
    stored = list(Message.objects.order_by("id").values_list("role", "content", "customer_message"))
    assert stored == [
        ("user", "Do you deliver?", ""),
        ("assistant", "Yes, Monday to Friday.", ""),
        ("user", "And on Sunday?", "And on Sunday?"),
    ]
    assert (call.conversation_id, call.message.content, call.status) == (conversation.pk, "And on Sunday?", "queued")
    assert call.model == "mistral-large-latest"

    execute_now(call.pk)

    call.refresh_from_db()
    assert call.status == Call.Status.SUCCEEDED
    assert call.request["messages"] == HISTORY  # the provider reads the same conversation, in order


def test_a_long_history_is_stored_in_order(client, integration_token, settings, published):
    """Past what one statement takes, the messages go in batches: still all of them, in order."""
    settings.API_CHAT_WAIT_SECONDS = 0
    _, token = integration_token
    turns = [{"role": ("user", "assistant")[n % 2], "content": f"turn {n}"} for n in range(2_047)]

    response = relay(client, token, {"messages": turns})

    assert response.status_code == 503
    stored = list(Message.objects.order_by("id").values_list("content", flat=True))
    assert stored == [f"turn {n}" for n in range(2_047)]
    assert Call.objects.get().message.content == "turn 2046"


def test_more_turns_than_openai_takes_are_refused_naming_the_limit(client, integration_token, published):
    turns = [{"role": ("user", "assistant")[n % 2], "content": f"turn {n}"} for n in range(2_049)]

    response = relay(client, integration_token[1], {"messages": turns})

    assert response.status_code == 400
    assert "2,049 entries; at most 2,048 are taken" in response.json()["error"]["message"]
    assert not Message.objects.exists()


def test_a_model_naming_a_connection_uses_it_and_sends_its_own_model(client, integration_token, settings, published):
    settings.API_CHAT_WAIT_SECONDS = 0
    integration, token = integration_token
    backup = ConnectionFactory(name="Backup", base_url=integration.default_connection.base_url, model="open-mixtral")
    integration.connections.add(backup)

    relay(client, token, {"model": "Backup", "messages": HISTORY[-1:]})

    call = Call.objects.get()
    assert (call.connection, call.model, call.conversation.overrides) == (backup, "open-mixtral", {})


def test_a_disabled_integration_or_an_unknown_token_is_refused(client, integration_token):
    integration, token = integration_token
    assert relay(client, token + "x", {"messages": HISTORY}).status_code == 401
    integration.is_active = False
    integration.save()
    assert relay(client, token, {"messages": HISTORY}).status_code == 401
    assert not Call.objects.exists()


def test_on_postgresql_a_relayed_request_is_three_statements_before_the_wait(
    client, integration_token, settings, published
):
    """The token, the model, the accept; the outcome is a fourth once the worker rings. A regression here
    is the relay benchmark's CPU per request going back up (docs/benchmarks.md)."""
    if db.vendor != "postgresql":
        pytest.skip("the hand-written statements are PostgreSQL's")
    settings.API_CHAT_WAIT_SECONDS = 0
    integration, token = integration_token
    integration.last_used_at = timezone.now()  # its once-a-minute note is not per request
    integration.save()

    with CaptureQueriesContext(db) as statements:
        response = relay(client, token, {"model": "mistral-small-latest", "messages": HISTORY})

    assert response.status_code == 503
    assert len(statements) == 3, [q["sql"] for q in statements]
    assert Message.objects.count() == 3 and Call.objects.count() == 1


def test_on_postgresql_a_message_continuing_a_conversation_is_eight_statements(
    client, integration_token, settings, published
):
    """/api/v1/messages: the token, the template, in BEGIN … COMMIT the contact's lock, the conversation and the
    message with its call (one statement), and the outcome."""
    if db.vendor != "postgresql":
        pytest.skip("the hand-written statements are PostgreSQL's")
    integration, token = integration_token
    body = {"template": "Support", "contact": "+4915112345678", "message": "Do you deliver?"}
    body["variables"] = {"business_name": "Acme"}
    first = client.post("/api/v1/messages", json.dumps(body), content_type="application/json", **auth(token))

    with CaptureQueriesContext(db) as statements:
        second = client.post(
            "/api/v1/messages",
            json.dumps({**body, "message": "And on Sunday?"}),  # the same values: no change to the conversation
            content_type="application/json",
            **auth(token),
        )

    assert second.json()["conversation_id"] == first.json()["conversation_id"]
    assert second.json()["status"] == "queued"
    assert len(statements) == 8, [q["sql"] for q in statements]
    conversation = Conversation.objects.get()
    assert [m.customer_message for m in conversation.messages.order_by("id")] == ["Do you deliver?", "And on Sunday?"]
    assert Call.objects.filter(conversation=conversation).count() == 2


def test_a_model_the_platform_named_wrongly_is_the_platforms_to_fix(client, integration_token, settings, published):
    """A new user's walk: a chat request's typo in model told the team to empty a console override."""
    settings.API_CHAT_WAIT_SECONDS = 0
    _, token = integration_token
    relay(client, token, {"model": "sandbox-no-such-model", "messages": HISTORY[-1:]})

    execute_now(Call.objects.get().pk)

    call = Call.objects.get()
    assert call.status == Call.Status.FAILED
    assert call.help.cause.startswith("The platform's request named the model 'sandbox-no-such-model'")
    assert "GET /api/v1/models" in call.help.fix and "console" not in call.help.fix


def _database_gone(*args, **kwargs):
    raise OperationalError("the database system is shutting down")


@pytest.mark.parametrize(("on_disk", "answer"), [(True, "queued as call"), (False, "briefly unavailable")])
def test_a_chat_request_whose_database_goes_away_while_it_waits_is_never_told_to_send_again_once_on_disk(
    client, integration_token, settings, published, monkeypatch, on_disk, answer
):
    """Taken, then the database went away: an answer asking for a retry would make a second conversation and a
    second paid call. Only a request taken a moment ago (its rows perhaps not on disk yet) is told to retry."""
    _, token = integration_token
    monkeypatch.setattr(openai_compat, "wait_for", _database_gone)
    monkeypatch.setattr(store, "durable", _database_gone)
    # Taken long enough ago for PostgreSQL's WAL writer to have written its rows, or a moment ago.
    monkeypatch.setattr(openai_compat, "ON_DISK_AFTER_SECONDS", -1 if on_disk else 60)
    client.raise_request_exception = False  # answered as a server answers it: ApiErrorsMiddleware's 503

    response = relay(client, token, {"messages": HISTORY})

    assert response.status_code == 503 and answer in response.json()["error"]["message"]
    if on_disk:
        call = Call.objects.get()
        assert response.json()["error"]["message"].endswith(f"(/api/v1/calls/{call.pk}).")
        assert (response["x-should-retry"], response["Retry-After"]) == ("false", "5")
    else:
        assert "x-should-retry" not in response
