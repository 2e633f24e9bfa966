"""The client against the sandbox on loopback, and the error bodies of PROTOCOLS.md classified one by one."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from connectors import chat_completions
from connectors.errors import ErrorKind, ProviderError

KEY = "sb-client-test-key-0001"


def chat(sandbox, model="mistral-small-latest", key=KEY, timeout=5.0, **fields):
    body = chat_completions.build_body(model=model, messages=[{"role": "user", "content": "Hello"}], **fields)
    return chat_completions.chat(base_url=sandbox.base_url, api_key=key, body=body, timeout=timeout)


def test_it_returns_the_reply_tokens_and_id(sandbox):
    reply = chat(sandbox)

    assert reply.content == "Sandbox reply from mistral-small-latest: you said 'Hello'."
    assert reply.finish_reason == "stop"
    assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert reply.response_id.startswith("cmpl-")
    assert reply.status == 200


def test_it_sends_optional_fields_only_when_set():
    assert chat_completions.build_body(model="m", messages=[]) == {"model": "m", "messages": []}
    body = chat_completions.build_body(model="m", messages=[], max_tokens=0, temperature=0.0)
    assert body["max_tokens"] == 0 and body["temperature"] == 0.0


def test_the_sandbox_accepts_the_optional_fields_mistral_documents(sandbox):
    assert chat(sandbox, max_tokens=50, temperature=0.2).content


@pytest.mark.parametrize(
    ("model", "key", "kind", "status", "message"),
    [
        ("mistral-small-latest", "wrong-key", ErrorKind.AUTH, 401, "Unauthorized"),
        ("mistral-tiny-2099", KEY, ErrorKind.INVALID_MODEL, 422, "Invalid model: mistral-tiny-2099"),
        ("sandbox-forbidden", KEY, ErrorKind.AUTH, 403, "You do not have access"),
        ("sandbox-rate-limit", KEY, ErrorKind.RATE_LIMITED, 429, "Rate limit exceeded"),
        ("sandbox-server-error", KEY, ErrorKind.PROVIDER_ERROR, 500, "Internal server error"),
        ("sandbox-overloaded", KEY, ErrorKind.PROVIDER_ERROR, 503, "Service tier capacity exceeded"),
        ("sandbox-bad-gateway", KEY, ErrorKind.PROVIDER_ERROR, 502, "502 Bad Gateway"),
        ("sandbox-invalid-json", KEY, ErrorKind.BAD_RESPONSE, 200, "The answer is not JSON"),
        ("sandbox-empty-choices", KEY, ErrorKind.BAD_RESPONSE, 200, "no choices"),
        ("sandbox-empty-reply", KEY, ErrorKind.BAD_RESPONSE, 200, "empty reply"),
    ],
)
def test_it_classifies_each_sandbox_error(sandbox, model, key, kind, status, message):
    with pytest.raises(ProviderError) as caught:
        chat(sandbox, model=model, key=key)

    assert caught.value.kind == kind
    assert caught.value.status == status
    assert message in caught.value.message


def test_a_rate_limit_carries_retry_after(sandbox):
    with pytest.raises(ProviderError) as caught:
        chat(sandbox, model="sandbox-rate-limit")
    assert caught.value.retry_after == 1.0
    assert not caught.value.permanent


def test_a_slow_provider_ends_as_a_timeout(sandbox):
    with pytest.raises(ProviderError) as caught:
        chat(sandbox, model="sandbox-slow-2", timeout=0.3)
    assert caught.value.kind == ErrorKind.TIMEOUT
    assert "within 0.3 s" in caught.value.message


def test_an_unreachable_host_is_a_network_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        with pytest.raises(ProviderError) as caught:
            chat_completions.chat(
                base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, body={"model": "m", "messages": []}, timeout=2
            )
    assert caught.value.kind == ErrorKind.NETWORK
    assert "connection refused" in caught.value.message


def test_a_key_echoed_by_the_provider_is_redacted(sandbox):
    with pytest.raises(ProviderError) as caught:
        chat(sandbox, model="sandbox-echo-key")
    assert KEY not in caught.value.message and KEY not in caught.value.body
    assert "[redacted]" in caught.value.message


def test_it_lists_the_models(sandbox):
    models = chat_completions.list_models(base_url=sandbox.base_url, api_key=KEY, timeout=5)
    assert "mistral-small-latest" in models


# Error bodies exactly as PROTOCOLS.md records them from real providers.
@pytest.mark.parametrize(
    ("status", "body", "kind", "message"),
    [
        (401, {"message": "Unauthorized", "request_id": "c61f2f15feca71626a990e3740f99245"}, "auth", "Unauthorized"),
        (401, {"detail": "Unauthorized"}, "auth", "Unauthorized"),
        (
            422,
            {
                "object": "error",
                "message": {
                    "detail": [
                        {
                            "type": "extra_forbidden",
                            "loc": ["body", "store"],
                            "msg": "Extra inputs are not permitted",
                            "input": False,
                        }
                    ]
                },
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
            "bad_request",
            "store: Extra inputs are not permitted",
        ),
        (
            422,
            {"detail": [{"type": "missing", "loc": ["body", "model"], "msg": "Field required", "input": {}}]},
            "missing_model",
            "model: Field required",
        ),
        (
            400,
            {
                "object": "error",
                "message": "Invalid model: mistral-tiny-2099",
                "type": "invalid_model",
                "param": None,
                "code": "1500",
            },
            "invalid_model",
            "Invalid model: mistral-tiny-2099",
        ),
        (
            400,
            {
                "object": "error",
                "message": "Assistant message must have either content or tool_calls, but not both.",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            },
            "bad_request",
            "either content or tool_calls",
        ),
        (429, {"message": "Requests rate limit exceeded"}, "rate_limited", "Requests rate limit exceeded"),
        (
            401,
            {
                "error": {
                    "message": "Incorrect API key provided: sk-…wjh3.",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "invalid_api_key",
                }
            },
            "auth",
            "Incorrect API key provided",
        ),
        (
            404,
            {"error": {"message": "The model `gpt-9` does not exist", "type": "invalid_request_error"}},
            "invalid_model",
            "does not exist",
        ),
        (
            529,
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "req_1"},
            "provider_error",
            "Overloaded",
        ),
        (
            400,
            {"object": "error", "message": json.dumps({"detail": "bad temperature"}), "type": "invalid_request_error"},
            "bad_request",
            "bad temperature",
        ),
    ],
)
def test_it_reads_every_error_shape(status, body, kind, message):
    error = chat_completions.classify(status, json.dumps(body), {})

    assert error.kind == kind
    assert message in error.message


def test_an_html_error_page_is_summarised_by_its_title():
    error = chat_completions.classify(502, "<html><title>Bad Gateway</title><body>nginx</body></html>")
    assert error.kind == ErrorKind.PROVIDER_ERROR
    assert error.message == "an HTML page titled 'Bad Gateway'"


def test_a_redirect_is_not_followed():
    error = chat_completions.classify(301, "", {"Location": "https://elsewhere.example/v1"})
    assert error.kind == ErrorKind.BAD_RESPONSE
    assert "redirects are not followed" in error.message


def test_reasoning_models_content_chunks_are_joined():
    body = {
        "choices": [
            {
                "message": {"content": [{"type": "thinking", "thinking": []}, {"type": "text", "text": "Hi"}]},
                "finish_reason": "stop",
            }
        ]
    }
    assert chat_completions.parse_reply(200, json.dumps(body)).content == "Hi"


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("sandbox-giant", "The answer is larger than 2048 KB and was not read."),
        ("sandbox-html", "The answer is not JSON (Content-Type text/html): an HTML page titled 'Sign in'"),
        ("sandbox-not-utf8", "The answer is not UTF-8 text"),
    ],
)
def test_unusable_answers_are_bad_responses_that_say_why(sandbox, model, message):
    with pytest.raises(ProviderError) as caught:
        chat(sandbox, model=model)
    assert caught.value.kind == ErrorKind.BAD_RESPONSE
    assert message in caught.value.message
    assert len(caught.value.body) <= chat_completions.STORED_BODY_CHARS


def test_a_body_that_trickles_in_past_the_timeout_is_a_timeout(sandbox):
    # requests' read timeout applies to each read; the client enforces the whole exchange.
    with pytest.raises(ProviderError) as caught:
        chat(sandbox, model="sandbox-trickle", timeout=1.0)
    assert caught.value.kind == ErrorKind.TIMEOUT


class OneAnswerServer:
    """A bare TCP server that reads one request, keeps its bytes, and sends `answer` (then hangs up)."""

    def __init__(self, answer: bytes, hold: float = 0.0):
        self.answer, self.hold, self.request = answer, hold, b""
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(1)
        self.socket.settimeout(10)  # a client that never connects fails the test instead of hanging it
        self.base_url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/v1"
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self):
        conn, _ = self.socket.accept()
        with conn:
            conn.settimeout(10)
            while b"\r\n\r\n" not in self.request:
                self.request += conn.recv(65536)
            conn.sendall(self.answer)
            time.sleep(self.hold)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.thread.join()
        self.socket.close()


def head(length: int) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n".encode()


def test_an_answer_cut_off_midway_is_a_network_error():
    with OneAnswerServer(head(30) + b'{"id": "x"') as server, pytest.raises(ProviderError) as caught:
        chat_completions.chat(base_url=server.base_url, api_key=KEY, body={"model": "m", "messages": []}, timeout=5)
    assert caught.value.kind == ErrorKind.NETWORK
    assert "broke off" in caught.value.message


def test_a_declared_giant_answer_is_refused_before_it_is_read():
    with OneAnswerServer(head(10**9) + b'{"id": ', hold=3) as server:
        started = time.monotonic()
        with pytest.raises(ProviderError) as caught:
            chat_completions.chat(base_url=server.base_url, api_key=KEY, body={"model": "m", "messages": []}, timeout=5)
        assert time.monotonic() - started < 2  # not waiting for a body that would never fit
    assert caught.value.kind == ErrorKind.BAD_RESPONSE
    assert "larger than 2048 KB" in caught.value.message


def test_the_request_names_switchboard_and_carries_the_key_only_in_its_header():
    reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Hi"}, "finish_reason": "stop"}]})
    with OneAnswerServer(head(len(reply)) + reply.encode()) as server:
        chat_completions.chat(base_url=server.base_url, api_key=KEY, body={"model": "m", "messages": []}, timeout=5)
    request = server.request.decode()
    assert request.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert "\r\nUser-Agent: Switchboard/1.0" in request
    assert f"\r\nAuthorization: Bearer {KEY}\r\n" in request
    assert "\r\nAccept-Encoding: gzip, deflate\r\n" in request


@pytest.mark.parametrize("bad_key", ["sk-first\nInjected: yes", "sk with space", "sk-clé"])
def test_a_key_no_header_can_carry_is_refused_without_quoting_it(bad_key):
    with pytest.raises(ProviderError) as caught:
        chat_completions.chat(base_url="http://127.0.0.1:9/v1", api_key=bad_key, body={"model": "m"}, timeout=1)
    assert caught.value.kind == ErrorKind.CONFIG
    assert "Paste the key again" in caught.value.message
    assert bad_key not in str(caught.value) and "sk" not in caught.value.message


def test_a_setting_that_is_not_a_number_is_refused_before_anything_is_sent():
    body = {"model": "m", "messages": [], "temperature": float("nan")}
    with pytest.raises(ProviderError) as caught:
        chat_completions.chat(base_url="http://127.0.0.1:9/v1", api_key=KEY, body=body, timeout=1)
    assert caught.value.kind == ErrorKind.CONFIG
    assert "NaN or infinite" in caught.value.message


CONTEXT_TOO_LONG_BODIES = [
    (  # OpenAI
        '{"error": {"message": "This model\'s maximum context length is 8192 tokens. However, your messages resulted '
        'in 9000 tokens. Please reduce the length of the messages.", "type": "invalid_request_error", '
        '"param": "messages", "code": "context_length_exceeded"}}'
    ),
    (  # Mistral
        '{"object": "error", "message": "Prompt contains 40000 tokens and 0 draft tokens, too large for model with '
        '32768 maximum context length", "type": "invalid_request_message_error", "param": null, "code": "3051"}'
    ),
    (  # llama.cpp's server
        '{"error": {"code": 400, "message": "the request exceeds the available context size, try increasing it", '
        '"type": "exceed_context_size_error", "n_prompt_tokens": 5000, "n_ctx": 4096}}'
    ),
]


@pytest.mark.parametrize("body", CONTEXT_TOO_LONG_BODIES)
def test_a_context_too_long_is_its_own_kind_with_its_fix(body):
    error = chat_completions.classify(400, body)
    assert error.kind == ErrorKind.CONTEXT_TOO_LONG and error.permanent
    assert "CONVERSATION_HISTORY_TOKENS" in error.help.fix and "larger context" in error.help.fix


def test_anthropics_prompt_too_long_is_a_context_too_long_too():
    from connectors.providers.anthropic import classify

    body = (
        '{"type": "error", "error": {"type": "invalid_request_error", '
        '"message": "prompt is too long: 210000 tokens > 200000 maximum"}}'
    )
    assert classify(400, body).kind == ErrorKind.CONTEXT_TOO_LONG
