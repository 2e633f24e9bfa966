"""The worker's side of a call, run in-process against the sandbox: what lands in the log."""

from __future__ import annotations

import pytest
from django.urls import reverse

from connectors.errors import ErrorKind, explain
from conversations import delivery, services
from conversations.models import Call

pytestmark = pytest.mark.django_db


def send(connection, template, message="Do you deliver on Sundays?"):
    call = services.call_send(
        connection=connection, template=template, customer_message=message, variables={"business_name": "Acme"}
    )
    return delivery.call_execute(call_id=call.pk)


def test_it_records_the_reply(connection, template):
    call = send(connection, template)

    call.refresh_from_db()
    assert call.status == Call.Status.SUCCEEDED
    assert call.reply_text == "Sandbox reply from mistral-small-latest: you said 'Do you deliver on Sundays?'."
    assert call.http_status == 200
    assert call.prompt_tokens > 0 and call.completion_tokens > 0
    assert call.latency_ms is not None and call.finished_at >= call.started_at >= call.queued_at
    assert call.request == {
        "model": "mistral-small-latest",
        "messages": [
            {"role": "system", "content": "You are the support assistant of Acme. Answer briefly."},
            {"role": "user", "content": "Do you deliver on Sundays?"},
        ],
    }
    assert call.reply.content == call.reply_text
    assert [m.role for m in call.conversation.messages.all()] == ["user", "assistant"]


def test_a_second_delivery_of_the_same_call_does_nothing(connection, template):
    call = send(connection, template)

    assert delivery.call_execute(call_id=call.pk) is None
    assert call.conversation.messages.filter(role="assistant").count() == 1


def test_a_continued_conversation_sends_the_history(connection, template):
    first = send(connection, template, "Hi")
    second = services.conversation_reply(conversation=first.conversation, customer_message="And on Monday?")
    delivery.call_execute(call_id=second.pk)

    second.refresh_from_db()
    assert [m["role"] for m in second.request["messages"]] == ["system", "user", "assistant", "user"]
    assert second.request["messages"][2]["content"] == first.reply_text
    assert second.status == Call.Status.SUCCEEDED


def test_a_long_conversation_sends_only_its_newest_turns(connection, template, settings):
    settings.CONVERSATION_HISTORY_MESSAGES = 3
    call = send(connection, template, "Turn 1")
    for n in (2, 3):
        call = services.conversation_reply(conversation=call.conversation, customer_message=f"Turn {n}")
        delivery.call_execute(call_id=call.pk)

    call.refresh_from_db()
    sent = [m["content"] for m in call.request["messages"]]
    assert sent[0] == "You are the support assistant of Acme. Answer briefly."
    assert sent[1:] == [
        "Turn 2",
        call.conversation.messages.get(answered_by__message__content="Turn 2").content,
        "Turn 3",
    ]


def test_history_beyond_the_token_budget_is_left_out(connection, template, settings):
    settings.CONVERSATION_HISTORY_TOKENS = 100  # the reply (it quotes the question) fits, the question not
    first = send(connection, template, "An early question " + "x" * 200)
    call = services.conversation_reply(conversation=first.conversation, customer_message="A short one")
    delivery.call_execute(call_id=call.pk)

    call.refresh_from_db()
    assert [m["content"] for m in call.request["messages"]][1:] == [first.reply_text, "A short one"]


def test_a_message_that_came_after_is_not_sent_with_an_earlier_call(connection, template):
    first = send(connection, template, "Hi")
    earlier = services.conversation_reply(conversation=first.conversation, customer_message="Where is my parcel?")
    services.conversation_reply(conversation=first.conversation, customer_message="It is order 42")
    delivery.call_execute(call_id=earlier.pk)

    earlier.refresh_from_db()
    assert earlier.request["messages"][-1]["content"] == "Where is my parcel?"
    assert "It is order 42" not in str(earlier.request)


@pytest.mark.parametrize(
    ("change", "kind", "status", "message"),
    [
        ({"api_key": "wrong-key"}, ErrorKind.AUTH, 401, "Unauthorized"),
        ({"model": "mistral-tiny-2099"}, ErrorKind.INVALID_MODEL, 422, "Invalid model: mistral-tiny-2099"),
        ({"model": "sandbox-forbidden"}, ErrorKind.AUTH, 403, "You do not have access"),
        ({"model": "sandbox-rate-limit"}, ErrorKind.RATE_LIMITED, 429, "Rate limit exceeded"),
        ({"model": "sandbox-server-error"}, ErrorKind.PROVIDER_ERROR, 500, "Internal server error"),
        ({"model": "sandbox-bad-gateway"}, ErrorKind.PROVIDER_ERROR, 502, "Bad Gateway"),
        ({"model": "sandbox-invalid-json"}, ErrorKind.BAD_RESPONSE, 200, "not JSON"),
        ({"model": "sandbox-empty-choices"}, ErrorKind.BAD_RESPONSE, 200, "no choices"),
        ({"model": "sandbox-empty-reply"}, ErrorKind.BAD_RESPONSE, 200, "empty reply"),
        ({"model": "sandbox-slow-3", "timeout_seconds": 0.5}, ErrorKind.TIMEOUT, None, "within 0.5 s"),
        ({"model": ""}, ErrorKind.MISSING_MODEL, None, "has no model, so nothing was sent"),
        ({"max_tokens": 10}, None, 200, ""),
        # saved past the form's check (an older row): Mistral would answer 422, so nothing is sent
        ({"temperature": 9.0}, ErrorKind.CONFIG, None, "Mistral's temperature is from 0 to 1.5; 9 is not."),
    ],
)
def test_each_failure_lands_in_the_log_with_its_kind_message_and_fix(
    admin_client, connection, template, change, kind, status, message
):
    if "api_key" in change:
        connection.set_api_key(change.pop("api_key"))
    for field, value in change.items():
        setattr(connection, field, value)
    connection.max_attempts = 1  # this test is about one attempt's record; retries have their own tests
    connection.save()

    call = send(connection, template)
    call.refresh_from_db()

    assert call.http_status == status
    if kind is None:
        assert call.status == Call.Status.SUCCEEDED
        return
    assert call.status == Call.Status.FAILED
    assert call.error_kind == kind
    assert message in call.error_message
    help = explain(kind, status, call.error_message)
    assert call.help == help
    page = admin_client.get(reverse("conversations:detail", args=[call.conversation_id])).content.decode()
    assert help.fix.replace("'", "&#x27;") in page
    assert call.get_error_kind_display() in page


def test_a_missing_model_is_refused_before_sending(connection, template, sandbox):
    connection.model = ""
    connection.save()

    call = send(connection, template)

    assert call.http_status is None and call.response_body == ""
    assert call.help.fix.startswith("Set the connection's model")
