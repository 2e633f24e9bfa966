"""The drop-in endpoint with the official SDKs, against a live server and a real worker: every error kind
reaches the client with a status its SDK does not retry when a retry cannot help, streaming yields the
reply, and the models list names what the integration may use."""

from __future__ import annotations

import pytest
from mistralai.client import Mistral
from mistralai.client.errors import SDKError
from openai import (
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    OpenAI,
)

from conversations.models import Call, Conversation

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
ASK = [{"role": "user", "content": "Where is my parcel?"}]
REPLY = "Sandbox reply from mistral-small-latest: you said 'Where is my parcel?'."


@pytest.fixture
def openai_client(live_server, integration_token, celery_worker):
    # The SDK's default retries (2): a failure that a retry cannot fix must still be one request.
    return OpenAI(base_url=f"{live_server.url}/api/v1", api_key=integration_token[1])


def requests_made() -> tuple[int, int]:
    """(requests Switchboard accepted, requests the provider saw): one conversation per accepted request
    on this endpoint, one call row per provider request."""
    return Conversation.objects.count(), Call.objects.count()


@pytest.mark.parametrize(
    ("model", "error", "status", "words"),
    [
        ("sandbox-no-such-model", NotFoundError, 404, "GET /api/v1/models lists the models"),
        ("sandbox-forbidden", NotFoundError, 404, "You do not have access"),  # not on the plan: the client's pick
        ("sandbox-context-length", BadRequestError, 400, "Context too long"),
    ],
)
def test_a_failure_the_request_causes_is_a_4xx_made_once(openai_client, model, error, status, words):
    with pytest.raises(error) as raised:
        openai_client.chat.completions.create(model=model, messages=ASK)
    assert raised.value.status_code == status and words in raised.value.message
    assert requests_made() == (1, 1)


def test_a_failure_of_switchboards_own_connection_is_a_502_made_once(openai_client, integration_token):
    connection = integration_token[0].connections.get()
    connection.set_api_key("wrong-revoked-key-0000")  # the sandbox refuses keys starting "wrong"
    connection.save()

    with pytest.raises(InternalServerError) as raised:
        openai_client.chat.completions.create(model="mistral-small-latest", messages=ASK)

    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert "connection Sandbox failed: Authentication" in raised.value.message
    call = Call.objects.get()
    assert f"Logged as call {call.pk} (GET /api/v1/calls/{call.pk})." in raised.value.message  # to look it up
    assert requests_made() == (1, 1)


def test_a_transient_failure_still_failing_is_a_503_with_retry_after(live_server, integration_token, celery_worker):
    client = OpenAI(base_url=f"{live_server.url}/api/v1", api_key=integration_token[1], max_retries=0)
    with pytest.raises(InternalServerError) as raised:
        client.chat.completions.create(model="sandbox-overloaded", messages=ASK)
    assert raised.value.status_code == 503
    assert raised.value.response.headers["retry-after"] == "5"
    assert "failing for now" in raised.value.message


def test_a_wrong_switchboard_token_is_a_401_that_names_it(live_server, integration_token):
    client = OpenAI(base_url=f"{live_server.url}/api/v1", api_key="sb_not-a-token")
    with pytest.raises(AuthenticationError, match="matches no integration"):
        client.chat.completions.create(model="mistral-small-latest", messages=ASK)
    assert requests_made() == (0, 0)


def test_the_openai_stream_yields_the_reply_and_its_usage(openai_client):
    stream = openai_client.chat.completions.create(
        model="mistral-small-latest", messages=ASK, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == REPLY
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens == Call.objects.get().total_tokens > 0


def test_a_failing_stream_raises_before_any_chunk(openai_client):
    with pytest.raises(NotFoundError):
        openai_client.chat.completions.create(model="sandbox-no-such-model", messages=ASK, stream=True)


def test_the_models_list_names_the_connections_and_the_default_connections_models(openai_client):
    listed = [model.id for model in openai_client.models.list()]
    assert listed[:2] == ["Sandbox", "mistral-small-latest"]


def test_the_mistral_sdk_streams_and_reads_the_errors(live_server, integration_token, celery_worker):
    client = Mistral(api_key=integration_token[1], server_url=f"{live_server.url}/api")

    events = list(client.chat.stream(model="mistral-small-latest", messages=ASK))
    assert "".join(e.data.choices[0].delta.content or "" for e in events) == REPLY

    with pytest.raises(SDKError) as raised:
        client.chat.complete(model="sandbox-no-such-model", messages=ASK)
    assert raised.value.status_code == 404 and "GET /api/v1/models lists the models" in raised.value.body
    assert requests_made() == (2, 2)
