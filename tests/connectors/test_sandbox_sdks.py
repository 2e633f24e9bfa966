"""The sandbox answers like Mistral's API: the official SDKs parse its replies and its errors."""

from __future__ import annotations

import pytest
from mistralai.client import Mistral
from openai import AuthenticationError, OpenAI, UnprocessableEntityError


def test_the_mistral_sdk_reads_a_sandbox_reply(sandbox):
    client = Mistral(api_key="sb-sdk-key", server_url=sandbox.base_url.removesuffix("/v1"))

    response = client.chat.complete(
        model="mistral-small-latest", messages=[{"role": "user", "content": "Where is my order?"}]
    )

    assert response.choices[0].message.content == (
        "Sandbox reply from mistral-small-latest: you said 'Where is my order?'."
    )
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_the_mistral_sdk_lists_the_sandbox_models(sandbox):
    client = Mistral(api_key="sb-sdk-key", server_url=sandbox.base_url.removesuffix("/v1"))
    assert "mistral-small-latest" in [m.id for m in client.models.list().data]


def test_the_mistral_sdk_raises_on_a_sandbox_401(sandbox):
    client = Mistral(api_key="wrong-key", server_url=sandbox.base_url.removesuffix("/v1"))
    with pytest.raises(Exception) as caught:
        client.chat.complete(model="mistral-small-latest", messages=[{"role": "user", "content": "Hi"}])
    assert getattr(caught.value, "status_code", None) == 401


def test_the_openai_sdk_reads_a_sandbox_reply(sandbox):
    client = OpenAI(api_key="sb-sdk-key", base_url=sandbox.base_url, max_retries=0)

    completion = client.chat.completions.create(
        model="mistral-small-latest", messages=[{"role": "user", "content": "Hello"}]
    )

    assert completion.choices[0].message.content == "Sandbox reply from mistral-small-latest: you said 'Hello'."
    assert completion.usage.completion_tokens > 0


def test_the_openai_sdk_sees_the_sandbox_errors(sandbox):
    client = OpenAI(api_key="wrong-key", base_url=sandbox.base_url, max_retries=0)
    with pytest.raises(AuthenticationError):
        client.chat.completions.create(model="mistral-small-latest", messages=[{"role": "user", "content": "Hi"}])

    client = OpenAI(api_key="sb-sdk-key", base_url=sandbox.base_url, max_retries=0)
    with pytest.raises(UnprocessableEntityError, match="Invalid model"):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])


def test_the_anthropic_sdk_reads_a_sandbox_reply_and_lists_its_models(sandbox):
    from anthropic import Anthropic

    client = Anthropic(api_key="sb-sdk-key", base_url=sandbox.base_url.removesuffix("/v1"), max_retries=0)

    message = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Where is my order?"}],
    )

    assert message.content[0].text == "Sandbox reply from claude-haiku-4-5: you said 'Where is my order?'."
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0
    assert "claude-haiku-4-5" in [m.id for m in client.models.list()]


def test_the_anthropic_sdk_sees_the_sandbox_errors_as_anthropic_sends_them(sandbox):
    from anthropic import Anthropic, AuthenticationError, BadRequestError, NotFoundError, RateLimitError

    base = sandbox.base_url.removesuffix("/v1")
    hello = [{"role": "user", "content": "Hi"}]
    with pytest.raises(AuthenticationError, match="invalid x-api-key"):
        Anthropic(api_key="wrong-key", base_url=base, max_retries=0).messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=hello
        )
    client = Anthropic(api_key="sb-sdk-key", base_url=base, max_retries=0)
    with pytest.raises(NotFoundError, match="model: claude-nope"):
        client.messages.create(model="claude-nope", max_tokens=10, messages=hello)
    with pytest.raises(BadRequestError, match="temperature: Extra inputs are not permitted"):
        client.messages.create(  # SDK 2.x has no temperature parameter: sent as an extra field, refused
            model="claude-haiku-4-5", max_tokens=10, messages=hello, extra_body={"temperature": 0.5}
        )
    with pytest.raises(RateLimitError) as caught:
        client.messages.create(model="sandbox-rate-limit", max_tokens=10, messages=hello)
    assert caught.value.response.headers["retry-after"] == "1"
