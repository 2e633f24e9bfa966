"""The sandbox's stand-in for Anthropic's Messages API (`POST /v1/messages`, `GET /v1/models` with an
`anthropic-version` header), answering as ../shared/PROTOCOLS.md describes, errors included.

| request                                      | answer                                                   |
|----------------------------------------------|----------------------------------------------------------|
| no key, or a key starting with `wrong`       | 401 authentication_error "invalid x-api-key"             |
| no `anthropic-version` header                | 400 invalid_request_error                                |
| version 2026-10-21 with temperature/top_p/top_k | 400 "…: Extra inputs are not permitted"               |
| version 2023-06-01 with temperature over 1   | 400 "temperature: Input should be less than or equal to 1" |
| no `max_tokens`; a `system` role; roles in a row; a first turn not the user's | 400 invalid_request_error |
| a model not in the catalogue                 | 404 not_found_error "model: NAME"                        |
| model `sandbox-rate-limit`                   | 429 rate_limit_error with `retry-after: 1`               |
| model `sandbox-overloaded`                   | 529 overloaded_error                                     |
| model `sandbox-server-error`                 | 500 api_error                                            |

Otherwise the reply is "Sandbox reply from MODEL: you said '…'." as a text block, stop_reason end_turn.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Any

CATALOGUE = ["claude-haiku-4-5", "claude-sonnet-4-5", "claude-opus-4-1"]
TRIGGERS = {
    "sandbox-rate-limit": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "sandbox-overloaded": (529, "overloaded_error", "Overloaded"),
    "sandbox-server-error": (500, "api_error", "Internal server error"),
}
SAMPLING = ("temperature", "top_p", "top_k")
FIELDS = {"model", "messages", "max_tokens", "system", "stop_sequences", "stream", "metadata", *SAMPLING}


def _error(status: int, type_: str, message: str, headers: dict[str, str] | None = None):
    body = {"type": "error", "error": {"type": type_, "message": message}, "request_id": f"req_{uuid.uuid4().hex[:24]}"}
    return status, body, headers or {}


def _key(headers: Mapping[str, str]) -> str | None:
    key = headers.get("x-api-key") or ""
    auth = headers.get("Authorization") or ""
    if not key and auth.startswith("Bearer "):
        key = auth[7:].strip()
    return key if key and not key.startswith("wrong") else None


def models(headers: Mapping[str, str]) -> tuple[int, Any, dict[str, str]]:
    if _key(headers) is None:
        return _error(401, "authentication_error", "invalid x-api-key")
    data = [
        {"type": "model", "id": name, "display_name": name, "created_at": "2025-10-01T00:00:00Z"} for name in CATALOGUE
    ]
    return 200, {"data": data, "has_more": False, "first_id": CATALOGUE[0], "last_id": CATALOGUE[-1]}, {}


def messages(headers: Mapping[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
    if _key(headers) is None:
        return _error(401, "authentication_error", "invalid x-api-key")
    version = headers.get("anthropic-version")
    if not version:
        return _error(400, "invalid_request_error", "anthropic-version: header is required")
    if not isinstance(body, dict):
        return _error(400, "invalid_request_error", "The request body is not valid JSON.")
    for field in body:
        if field not in FIELDS or (field in SAMPLING and version >= "2026-10-21"):
            return _error(400, "invalid_request_error", f"{field}: Extra inputs are not permitted")
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not 0 <= temperature <= 1:
        return _error(400, "invalid_request_error", "temperature: Input should be less than or equal to 1")
    if "max_tokens" not in body:
        return _error(400, "invalid_request_error", "max_tokens: Field required")
    problem = _turns_problem(body.get("messages"))
    if problem:
        return _error(400, "invalid_request_error", problem)
    model = str(body.get("model", ""))
    if model in TRIGGERS:
        status, type_, message = TRIGGERS[model]
        return _error(status, type_, message, {"retry-after": "1"} if status == 429 else None)
    if model not in CATALOGUE:
        return _error(404, "not_found_error", f"model: {model}")
    said = body["messages"][-1]["content"]
    said = said if isinstance(said, str) else " ".join(str(b.get("text", "")) for b in said if isinstance(b, dict))
    text = f"Sandbox reply from {model}: you said {said[:500]!r}."
    prompt = sum(len(str(m.get("content", ""))) for m in body["messages"]) + len(str(body.get("system", "")))
    return (
        200,
        {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": max(1, prompt // 4), "output_tokens": max(1, len(text) // 4)},
        },
        {"anthropic-organization-id": "sandbox", "date": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())},
    )


def _turns_problem(turns: Any) -> str | None:
    if not isinstance(turns, list) or not turns:
        return "messages: at least one message is required"
    for n, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
            role = turn.get("role") if isinstance(turn, dict) else None
            return (
                f'messages.{n}.role: Input should be "user" or "assistant" (got {role!r}); '
                "use the top-level system parameter for a system prompt"
            )
        if n and turns[n - 1].get("role") == turn["role"]:
            return 'messages: roles must alternate between "user" and "assistant"'
    if turns[0]["role"] != "user":
        return 'messages: first message must use the "user" role'
    return None
