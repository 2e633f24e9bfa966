"""A local stand-in for Mistral's API, for demos, tests and benchmarks.

It listens on loopback only and answers `POST /v1/chat/completions` and `GET /v1/models` the way Mistral
does, error bodies included (see ../shared/PROTOCOLS.md). Replies are deterministic. Failures are chosen
by the request itself:

| request                                   | answer                                                  |
|-------------------------------------------|---------------------------------------------------------|
| any key starting with `wrong`             | 401 `{"message":"Unauthorized","request_id":…}`        |
| no Authorization header                   | 401 `{"detail":"Unauthorized"}`                         |
| a model not in the catalogue              | 422 `Invalid model: NAME` (type invalid_model)          |
| body that is not JSON                     | 400 invalid_request_error                               |
| no `model` field                          | 422 `{"detail":[{"type":"missing","loc":["body","model"]…}]}` |
| a field Mistral does not accept           | 422 `Extra inputs are not permitted` (wrapped)          |
| no user message                           | 400 invalid_request_error                               |
| model `sandbox-forbidden`                 | 403 model not available on your plan                    |
| model `sandbox-rate-limit`                | 429 rate_limited with `Retry-After: 1`                  |
| model `sandbox-server-error`              | 500 server error                                        |
| model `sandbox-overloaded`                | 503 service tier capacity exceeded                      |
| model `sandbox-bad-gateway`               | 502 with an HTML page, as a proxy sends                 |
| model `sandbox-slow` / `sandbox-slow-N`   | the normal reply after 5 s / N s                        |
| model `sandbox-trickle`                   | the reply's body sent a few bytes at a time over 3 s    |
| model `sandbox-invalid-json`              | 200 whose body is not JSON                              |
| model `sandbox-empty-choices`             | 200 with `"choices": []`                                |
| model `sandbox-empty-reply`               | 200 whose message content is empty                      |
| model `sandbox-echo-key`                  | 401 whose message repeats the key, as some gateways do  |
| model `sandbox-giant`                     | 200 with a 3 MB body                                    |
| model `sandbox-markdown`                  | a long reply in Markdown, as models write (about 9,000 characters) |
| model `sandbox-context-length`            | 400 "too large for model with 32768 maximum context length" |
| model `sandbox-html`                      | 200 with an HTML page (a login portal, a wrong base URL) |
| model `sandbox-not-utf8`                  | 200 whose body is Latin-1, not UTF-8                    |

It also speaks Anthropic's Messages API (`POST /v1/messages`, connectors/sandbox_anthropic.py) and stands in
for WhatsApp's send endpoint (connectors/sandbox_whatsapp.py).

`python manage.py runsandbox --port 8765 [--delay SECONDS] [--flaky N]` runs it; `--delay` slows every
reply, and `--flaky N` makes every distinct request fail its first N tries, with 500 and 429 in turn.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from . import sandbox_anthropic, sandbox_whatsapp

CATALOGUE = [
    "mistral-small-latest",
    "mistral-medium-latest",
    "mistral-large-latest",
    "ministral-14b-latest",
    "ministral-8b-latest",
    "ministral-3b-latest",
    "codestral-latest",
    "open-mistral-nemo",
]
TRIGGERS = [
    "sandbox-forbidden",
    "sandbox-rate-limit",
    "sandbox-server-error",
    "sandbox-overloaded",
    "sandbox-bad-gateway",
    "sandbox-slow",
    "sandbox-invalid-json",
    "sandbox-empty-choices",
    "sandbox-empty-reply",
    "sandbox-echo-key",
    "sandbox-giant",
    "sandbox-markdown",
    "sandbox-html",
    "sandbox-not-utf8",
    "sandbox-trickle",
    "sandbox-context-length",
]
REQUEST_FIELDS = {
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stream",
    "stop",
    "random_seed",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "safe_prompt",
    "parallel_tool_calls",
    "metadata",
    "prompt_cache_key",
    "prediction",
}
MESSAGE_FIELDS = {"role", "content", "tool_calls", "prefix", "tool_call_id", "name"}
# What a model writes when asked for details: headings, bold, a list, a link, a table and code, at length.
MARKDOWN_REPLY = (
    "## Opening hours\n\nWe are open **every day** from 9:00 to 18:00, and *until 20:00 on Fridays*.\n\n"
    "* Repairs: drop your bike at the [workshop](https://shop.example/workshop).\n* Rentals: by the day.\n\n"
    "| Service | Price |\n|---|---:|\n| Tune-up | 45 € |\n| New chain | 30 € |\n\n"
    "To check your order, run `order status 1234` or open:\n\n```\nhttps://shop.example/orders/1234\n```\n\n"
    + "\n\n".join(
        f"Paragraph {n}: our team answers every message within a day, and ~~never~~ rarely later. "
        "We keep spare parts for most models in stock, and order the rest within the week."
        for n in range(1, 60)
    )
)
SLOW = re.compile(r"^sandbox-slow(?:-(\d+(?:\.\d+)?))?$")


def _error(message: Any, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"object": "error", "message": message, "type": type_, "param": param, "code": code}


def _extra_forbidden(loc: list[Any], value: Any) -> dict[str, Any]:
    detail = [{"type": "extra_forbidden", "loc": loc, "msg": "Extra inputs are not permitted", "input": value}]
    return _error({"detail": detail}, "invalid_request_error")


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class Answer(Exception):
    """Raised inside the handler to send a status, a JSON (or raw) body and headers."""

    def __init__(
        self, status: int, body: Any, headers: dict[str, str] | None = None, raw: bool = False, encoding: str = "utf-8"
    ):
        self.status, self.body, self.headers, self.raw, self.encoding = status, body, headers or {}, raw, encoding


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients' connection pools work as they do in production
    server_version = "SwitchboardSandbox/1.0"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and the client's
    # delayed ACK hold every reply back ~40 ms.
    disable_nagle_algorithm = True

    def parse_request(self) -> bool:
        # For --record: a request has arrived when its first line has. Parsing the headers is the
        # sandbox's own time, as it would be a real provider's.
        self.received = time.time()
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path.rstrip("/") == "/_sandbox/whatsapp/outbox":
            to = parse_qs(query).get("to", [None])[0]
            return self._handle(lambda raw: self._raise(200, {"data": sandbox_whatsapp.outbox(to)}))
        if path.rstrip("/") == "/_sandbox/whatsapp/reads":
            return self._handle(lambda raw: self._raise(200, {"data": sandbox_whatsapp.reads()}))
        if path.rstrip("/") == "/v1/models" and self.headers.get("anthropic-version"):
            return self._handle(lambda raw: self._raise(*sandbox_anthropic.models(self.headers)))
        self._handle(self._models if path.rstrip("/") == "/v1/models" else None)

    def do_POST(self) -> None:
        path = self.path.partition("?")[0].rstrip("/")
        graph = sandbox_whatsapp.SEND_PATH.match(path)
        if graph:
            auth = self.headers.get("Authorization", "")
            return self._handle(lambda raw: self._raise(*sandbox_whatsapp.send(graph.group(1), auth, raw)))
        if path == "/v1/messages":
            return self._handle(self._anthropic)
        self._handle(self._chat if path == "/v1/chat/completions" else None)

    def _anthropic(self, raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        self._maybe_fail(raw)
        if self.server.delay:  # type: ignore[attr-defined]
            time.sleep(self.server.delay)  # type: ignore[attr-defined]
        status, answer, headers = sandbox_anthropic.messages(self.headers, body)
        raise Answer(status, answer, headers=headers)

    @staticmethod
    def _raise(status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raise Answer(status, body, headers=headers)

    def _handle(self, route: Any) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            if route is None:
                raise Answer(404, {"detail": "Not Found"})
            route(raw)
        except Answer as answer:
            try:
                self._send(answer)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up first (a timeout test): nothing to tell it
            self.server.record(self.received, time.time(), raw)  # type: ignore[attr-defined]  # the answer is out

    def _send(self, answer: Answer) -> None:
        if answer.raw:
            payload = answer.body.encode(answer.encoding)
            content_type = answer.headers.pop("Content-Type", "text/html")
        else:
            payload, content_type = json.dumps(answer.body).encode(), "application/json"
        self.send_response(answer.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _key(self) -> str:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[7:].strip():
            raise Answer(401, {"detail": "Unauthorized"})
        key = auth[7:].strip()
        if key.startswith("wrong"):
            raise Answer(401, {"message": "Unauthorized", "request_id": uuid.uuid4().hex})
        return key

    def _models(self, raw: bytes) -> None:
        self._key()
        created = int(time.time())
        data = [
            {
                "id": name,
                "object": "model",
                "created": created,
                "owned_by": "mistralai",
                "capabilities": {"completion_chat": True, "function_calling": True},
                "name": name,
                "description": f"Sandbox stand-in for {name}",
                "max_context_length": 131072,
                "aliases": [],
                "deprecation": None,
                "default_model_temperature": 0.3,
                "type": "base",
            }
            for name in CATALOGUE
        ]
        raise Answer(200, {"object": "list", "data": data})

    def _chat(self, raw: bytes) -> None:
        key = self._key()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise Answer(400, _error(f"Invalid JSON body: {exc}", "invalid_request_error")) from None
        if not isinstance(body, dict):
            raise Answer(
                422,
                {
                    "detail": [
                        {
                            "type": "model_attributes_type",
                            "loc": ["body"],
                            "msg": "Input should be a valid dictionary",
                            "input": body,
                        }
                    ]
                },
            )
        if "model" not in body:
            raise Answer(
                422, {"detail": [{"type": "missing", "loc": ["body", "model"], "msg": "Field required", "input": body}]}
            )
        for field in body:
            if field not in REQUEST_FIELDS:
                raise Answer(422, _extra_forbidden(["body", field], body[field]))
        messages = self._messages(body.get("messages"))
        model = str(body["model"])
        self._trigger(model, key)
        self._maybe_fail(raw)
        if model not in CATALOGUE and model not in TRIGGERS and not SLOW.match(model):
            raise Answer(422, _error(f"Invalid model: {model}", "invalid_model", code="1500"))
        if model == "sandbox-trickle":
            self._trickle(json.dumps(self._completion(model, messages)).encode(), seconds=3.0)
            return
        if self.server.delay:  # type: ignore[attr-defined]
            time.sleep(self.server.delay)  # type: ignore[attr-defined]
        raise Answer(200, self._completion(model, messages), headers=self._rate_headers())

    def _trickle(self, payload: bytes, seconds: float) -> None:
        """A provider (or proxy) that sends the body slowly: each read is quick, the whole is not."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        pieces = 10
        step = max(1, len(payload) // pieces)
        try:
            for start in range(0, len(payload), step):
                self.wfile.write(payload[start : start + step])
                self.wfile.flush()
                time.sleep(seconds / pieces)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _messages(self, messages: Any) -> list[dict[str, Any]]:
        if not isinstance(messages, list):
            raise Answer(
                422,
                {
                    "detail": [
                        {
                            "type": "list_type",
                            "loc": ["body", "messages"],
                            "msg": "Input should be a valid list",
                            "input": messages,
                        }
                    ]
                },
            )
        for index, message in enumerate(messages):
            if not isinstance(message, dict):
                raise Answer(400, _error("Each message must be an object.", "invalid_request_error"))
            for field in message:
                if field not in MESSAGE_FIELDS:
                    raise Answer(422, _extra_forbidden(["body", "messages", index, field], message[field]))
            if message.get("role") == "assistant" and message.get("content") and message.get("tool_calls"):
                raise Answer(
                    400,
                    _error(
                        "Assistant message must have either content or tool_calls, but not both.",
                        "invalid_request_error",
                    ),
                )
        if not any(isinstance(m, dict) and m.get("role") == "user" for m in messages):
            raise Answer(400, _error("Conversation must contain at least one user message.", "invalid_request_error"))
        return messages

    def _maybe_fail(self, raw: bytes) -> None:
        failures = self.server.count_failure(raw)  # type: ignore[attr-defined]
        if failures is None:
            return
        if failures % 2:
            raise Answer(500, _error("Internal server error", "server_error"))
        raise Answer(429, _error("Rate limit exceeded", "rate_limited", code="1300"), headers={"Retry-After": "1"})

    def _trigger(self, model: str, key: str) -> None:
        slow = SLOW.match(model)
        if slow:
            time.sleep(float(slow.group(1) or 5))
        elif model == "sandbox-forbidden":
            raise Answer(
                403, _error("You do not have access to model sandbox-forbidden on your plan.", "invalid_request_error")
            )
        elif model == "sandbox-rate-limit":
            raise Answer(429, _error("Rate limit exceeded", "rate_limited", code="1300"), headers={"Retry-After": "1"})
        elif model == "sandbox-server-error":
            raise Answer(500, _error("Internal server error", "server_error"))
        elif model == "sandbox-overloaded":
            raise Answer(503, _error("Service tier capacity exceeded for this model.", "invalid_request_error"))
        elif model == "sandbox-bad-gateway":
            page = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"
            raise Answer(502, page, raw=True)
        elif model == "sandbox-invalid-json":
            raise Answer(
                200, '{"id": "cmpl-broken", "choices": [', raw=True, headers={"Content-Type": "application/json"}
            )
        elif model == "sandbox-giant":
            raise Answer(
                200,
                json.dumps({"choices": [], "padding": "x" * (3 * 1024 * 1024)}),
                raw=True,
                headers={"Content-Type": "application/json"},
            )
        elif model == "sandbox-context-length":
            raise Answer(
                400,
                _error(
                    "Prompt contains 40000 tokens and 0 draft tokens, too large for model with 32768 maximum "
                    "context length",
                    "invalid_request_message_error",
                    code="3051",
                ),
            )
        elif model == "sandbox-html":
            raise Answer(200, "<html><head><title>Sign in</title></head><body>Portal</body></html>", raw=True)
        elif model == "sandbox-not-utf8":
            raise Answer(
                200,
                '{"choices": [{"message": {"content": "caf\xe9"}}]}',
                raw=True,
                headers={"Content-Type": "application/json; charset=latin-1"},
                encoding="latin-1",
            )
        elif model == "sandbox-echo-key":
            raise Answer(
                401,
                {
                    "error": {
                        "message": f"Incorrect API key provided: {key}.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )

    def _completion(self, model: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
        said = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
        content = f"Sandbox reply from {model}: you said {said[:500]!r}."
        if model == "sandbox-markdown":
            content = MARKDOWN_REPLY
        choices = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "tool_calls": None},
                "finish_reason": "stop",
            }
        ]
        if model == "sandbox-empty-choices":
            choices = []
        elif model == "sandbox-empty-reply":
            choices[0]["message"]["content"] = ""
        prompt_tokens = sum(_tokens(str(m.get("content", ""))) for m in messages)
        completion_tokens = _tokens(content)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def _rate_headers(self) -> dict[str, str]:
        return {"x-ratelimit-limit-req-minute": "60", "x-ratelimit-remaining-req-minute": "59"}


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # benchmarks open hundreds of connections at once

    def __init__(
        self, port: int = 0, *, delay: float = 0.0, flaky: int = 0, verbose: bool = False, record: str | None = None
    ):
        super().__init__(("127.0.0.1", port), SandboxHandler)
        self.delay = delay
        self.flaky = flaky
        self.verbose = verbose
        self.requests_seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._record = open(record, "a", buffering=1) if record else None  # noqa: SIM115 - lives as long as the server

    def record(self, received: float, answered: float, raw: bytes) -> None:
        """With --record FILE: when each request arrived and its answer was sent, and the customer's last words.

        The benchmarks read this to split a call's time between the provider and Switchboard.
        """
        if self._record is None:
            return
        try:
            said = next(m["content"] for m in reversed(json.loads(raw)["messages"]) if m.get("role") == "user")
        except (ValueError, KeyError, TypeError, StopIteration):
            said = ""
        line = json.dumps({"received": received, "answered": answered, "said": said})
        with self._lock:
            self._record.write(line + "\n")

    def count_failure(self, raw: bytes) -> int | None:
        """With `flaky`, the number of this failure (1, 2, …) for a request body seen before; else None."""
        if not self.flaky:
            return None
        digest = hashlib.sha256(raw).hexdigest()
        with self._lock:
            self.requests_seen[digest] += 1
            seen = self.requests_seen[digest]
        return seen if seen <= self.flaky else None

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (a timeout test) resets the connection: nothing worth a traceback.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="sandbox", daemon=True)
        thread.start()
        return thread
