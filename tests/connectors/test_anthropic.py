"""Anthropic's Messages API: what is sent, how the answer and its errors are read, and a call end to end.

The recorded bodies are Anthropic's documented ones (../shared/PROTOCOLS.md); the end-to-end tests go
through the real client code path to the sandbox, which refuses what Anthropic refuses.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from connectors.errors import ErrorKind, ProviderError
from connectors.providers import adapter_for
from connectors.providers.anthropic import Messages, classify, parse_reply
from connectors.services import connection_check
from conversations import services
from conversations.models import Call
from tests.factories import TEST_API_KEY, ConnectionFactory, TemplateFactory
from tests.helpers import execute_now

REPLY = (
    '{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[{"type":"text",'
    '"text":"We deliver on Sundays."}],"model":"claude-haiku-4-5-20251001","stop_reason":"end_turn",'
    '"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":30}}'
)


def error_body(type_: str, message: str) -> str:
    return f'{{"type":"error","error":{{"type":"{type_}","message":"{message}"}},"request_id":"req_011CSHoEeqs5"}}'


# --- What is sent -----------------------------------------------------------------------------------------


def test_the_system_prompt_is_a_top_level_field_and_turns_alternate_from_the_customer():
    body = Messages("https://api.anthropic.com/v1").body(
        model="claude-haiku-4-5",
        messages=[
            {"role": "system", "content": "You help Acme."},
            {"role": "assistant", "content": "Welcome!"},  # history trimmed to a budget can start with a reply
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": "I ordered a lamp"},  # a burst
            {"role": "assistant", "content": "Thank you. A person will answer."},
            {"role": "assistant", "content": "Hello, Ana here."},  # an automatic text, then a staff reply
            {"role": "user", "content": "Where is it?"},
        ],
    )

    assert body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 1024,
        "system": "You help Acme.",
        "messages": [
            {"role": "user", "content": "Hi\n\nI ordered a lamp"},
            {"role": "assistant", "content": "Thank you. A person will answer.\n\nHello, Ana here."},
            {"role": "user", "content": "Where is it?"},
        ],
    }


@pytest.mark.parametrize(
    ("version", "temperature", "words"),
    [("2026-10-21", 0.2, "takes no temperature"), ("2023-06-01", 1.5, "from 0 to 1")],
)
def test_a_temperature_the_version_refuses_is_refused_with_the_reason_never_dropped(version, temperature, words):
    with pytest.raises(ProviderError) as refused:
        Messages("https://api.anthropic.com/v1", version).body(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "Hi"}], temperature=temperature
        )
    assert refused.value.kind == ErrorKind.CONFIG and words in refused.value.message


@pytest.mark.django_db
@pytest.mark.parametrize(("version", "temperature"), [("2026-10-21", 0.2), ("2023-06-01", 1.5), ("", 1.2)])
def test_a_connection_whose_version_refuses_its_temperature_is_not_saved(version, temperature):
    connection = ConnectionFactory.build(
        provider="anthropic", base_url="https://api.anthropic.com/v1", api_version=version, temperature=temperature
    )
    connection.set_api_key(TEST_API_KEY)
    with pytest.raises(ValidationError) as refused:
        connection.full_clean()
    assert "temperature" in refused.value.message_dict


# --- How the answer and errors are read ---------------------------------------------------------------------


def test_a_recorded_reply_is_read_as_a_chat_reply():
    reply = parse_reply(200, REPLY)
    assert (reply.content, reply.finish_reason, reply.model) == (
        "We deliver on Sundays.",
        "stop",
        "claude-haiku-4-5-20251001",
    )
    assert (reply.prompt_tokens, reply.completion_tokens, reply.response_id) == (12, 30, "msg_01XFDUDYJgAACzvnptvVoYEL")
    assert parse_reply(200, REPLY.replace("end_turn", "max_tokens")).finish_reason == "length"


@pytest.mark.parametrize(
    ("status", "type_", "message", "kind", "retried"),
    [
        (401, "authentication_error", "invalid x-api-key", ErrorKind.AUTH, False),
        (403, "permission_error", "Your API key does not have permission", ErrorKind.AUTH, False),
        (404, "not_found_error", "model: claude-nope", ErrorKind.INVALID_MODEL, False),
        (400, "invalid_request_error", "messages: roles must alternate", ErrorKind.BAD_REQUEST, False),
        (413, "request_too_large", "Request exceeds the maximum allowed number of bytes", ErrorKind.BAD_REQUEST, False),
        (
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your rate limit",
            ErrorKind.RATE_LIMITED,
            True,
        ),
        (500, "api_error", "Internal server error", ErrorKind.PROVIDER_ERROR, True),
        (529, "overloaded_error", "Overloaded", ErrorKind.PROVIDER_ERROR, True),
    ],
)
def test_each_recorded_error_is_its_kind_with_anthropics_own_words(status, type_, message, kind, retried):
    error = classify(status, error_body(type_, message), {"retry-after": "7"} if status == 429 else {})
    assert (error.kind, error.message, error.permanent) == (kind, message, not retried)
    if status == 429:
        assert error.retry_after == 7.0


# --- A call end to end, through the sandbox ----------------------------------------------------------------


@pytest.fixture
def anthropic_connection(db, sandbox):
    def make(**fields):
        return ConnectionFactory(
            name="Claude", provider="anthropic", base_url=sandbox.base_url, model="claude-haiku-4-5", **fields
        )

    return make


@pytest.mark.parametrize("version", ["2023-06-01", "2026-10-21"])
def test_a_call_through_anthropic_is_answered_and_logged_without_the_key(anthropic_connection, version):
    connection = anthropic_connection(api_version=version)
    call = services.call_send(
        connection=connection,
        template=TemplateFactory(system_prompt="You help {{business_name}}."),
        customer_message="Do you deliver?",
        variables={"business_name": "Acme"},
    )

    call = execute_now(call.pk)

    assert call.status == Call.Status.SUCCEEDED, call.error_message
    assert call.reply_text == "Sandbox reply from claude-haiku-4-5: you said 'Do you deliver?'."
    assert call.finish_reason == "stop" and call.prompt_tokens and call.completion_tokens
    assert call.request["system"] == "You help Acme." and call.request["max_tokens"] == 1024
    assert TEST_API_KEY not in str(call.request) + call.response_body


def test_a_temperature_asked_for_per_call_that_the_version_refuses_is_refused_before_anything_is_sent(
    anthropic_connection,
):
    connection = anthropic_connection(api_version="2026-10-21")
    with pytest.raises(services.SendRefused, match="takes no temperature"):
        services.call_send(
            connection=connection,
            template=TemplateFactory(),
            customer_message="Hi",
            variables={"business_name": "Acme"},
            overrides={"temperature": 0.3},
        )
    assert not Call.objects.exists()


def test_checking_an_anthropic_connection_lists_its_models_and_says_hello(anthropic_connection):
    result = connection_check(connection=anthropic_connection())
    assert result.ok, result.error
    assert "claude-haiku-4-5" in result.models


def test_a_wrong_key_is_an_authentication_error_with_its_fix(anthropic_connection):
    connection = anthropic_connection(api_key="wrong-anthropic-key-0000")
    call = services.call_send(
        connection=connection, template=TemplateFactory(), customer_message="Hi", variables={"business_name": "Acme"}
    )
    call = execute_now(call.pk)
    assert (call.status, call.error_kind, call.http_status) == (Call.Status.FAILED, ErrorKind.AUTH, 401)
    assert call.error_message == "invalid x-api-key"
    assert adapter_for(connection).url.endswith("/v1/messages")
