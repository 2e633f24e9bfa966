"""Client for the chat-completions wire shape: Mistral's API, and OpenAI's, which it follows.

`POST {base_url}/chat/completions` with `Authorization: Bearer KEY` and a JSON body holding `model`,
`messages` and only the optional fields that were set (Mistral rejects unknown ones with 422). The reply is
`choices[0].message.content`. Every failure is raised as a `ProviderError` whose message is the provider's
own words, never containing the key.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.views.decorators.debug import sensitive_variables

from . import http
from .errors import ErrorKind, ProviderError

# Keep what we store of a raw answer small: enough to debug, not a copy of a giant body.
STORED_BODY_CHARS = 16_000


@dataclass(frozen=True)
class ChatReply:
    content: str
    finish_reason: str
    model: str
    response_id: str
    prompt_tokens: int | None
    completion_tokens: int | None
    status: int
    body: str


def build_body(
    *,
    model: str,
    messages: list[dict[str, str]],
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    if temperature is not None:
        body["temperature"] = temperature
    return body


@sensitive_variables("api_key")
def chat(*, base_url: str, api_key: str, body: dict[str, Any], timeout: float) -> ChatReply:
    """Send one chat completion and return the reply, or raise ProviderError."""
    status, text, headers = http.provider_request(
        "POST", f"{base_url.rstrip('/')}/chat/completions", api_key, body, timeout
    )
    if status >= 300:
        raise classify(status, text, headers)
    return parse_reply(status, text, headers.get("Content-Type", ""))


@sensitive_variables("api_key")
def list_models(*, base_url: str, api_key: str, timeout: float) -> list[str]:
    """The model ids the provider offers this key (`GET {base_url}/models`)."""
    status, text, headers = http.provider_request("GET", f"{base_url.rstrip('/')}/models", api_key, None, timeout)
    if status >= 300:
        raise classify(status, text, headers)
    try:
        data = json.loads(text)
        return sorted(str(item["id"]) for item in data["data"])
    except (ValueError, KeyError, TypeError):
        raise ProviderError(
            ErrorKind.BAD_RESPONSE, "The model list is not in the expected shape.", status=status, body=text
        ) from None


def parse_reply(status: int, text: str, content_type: str = "application/json") -> ChatReply:
    try:
        data = json.loads(text)
    except ValueError:
        kind_of_body = "" if "json" in content_type.lower() else f" (Content-Type {content_type or 'missing'})"
        raise ProviderError(
            ErrorKind.BAD_RESPONSE,
            f"The answer is not JSON{kind_of_body}: {_snippet(text)}",
            status=status,
            body=text[:STORED_BODY_CHARS],
        ) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ProviderError(ErrorKind.BAD_RESPONSE, "The answer has no choices.", status=status, body=text)
    choice = choices[0]
    message = choice.get("message") if isinstance(choice.get("message"), dict) else {}
    content = _content_text(message.get("content")).replace("\x00", "")  # PostgreSQL text cannot hold NUL
    finish_reason = str(choice.get("finish_reason") or "")
    if not content.strip():
        raise ProviderError(
            ErrorKind.BAD_RESPONSE,
            f"The provider returned an empty reply (finish_reason: {finish_reason or 'none'}).",
            status=status,
            body=text,
        )
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return ChatReply(
        content=content,
        finish_reason=finish_reason,
        model=str(data.get("model") or ""),
        response_id=str(data.get("id") or ""),
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        status=status,
        body=text[:STORED_BODY_CHARS],
    )


def _content_text(content: Any) -> str:
    # Mistral's reasoning models answer with a list of typed chunks instead of a string.
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(c.get("text", "") for c in content if isinstance(c, dict) and c.get("type") == "text")
    return ""


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# How providers word "too long for this model's context" (OpenAI and Mistral, llama.cpp's server, Anthropic,
# vLLM), besides the codes they send.
_CONTEXT_TOO_LONG = re.compile(
    r"maximum context length|context length|context window|context size|too large for model|prompt is too long"
    r"|exceeds? the (available )?context",
    re.I,
)
_CONTEXT_CODES = {"context_length_exceeded", "exceed_context_size_error", "3051"}
_INVALID_MODEL = re.compile(r"invalid model|unknown model|model\b.*\b(not found|does not exist|not exist)", re.I)


def classify(status: int, text: str, headers: Mapping[str, str] | None = None) -> ProviderError:
    """Turn a non-2xx answer into a ProviderError of the right kind, keeping the provider's message."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    data = _json_or_none(text)
    message = provider_message(data) if data is not None else _snippet(text)
    message = message or f"HTTP {status} with no message."
    body = text[:STORED_BODY_CHARS]

    if 300 <= status < 400:
        where = headers.get("location", "another address")
        kind, message = ErrorKind.BAD_RESPONSE, f"The provider redirected to {where}; redirects are not followed."
    elif status in (401, 403):
        kind = ErrorKind.AUTH
    elif status == 429:
        kind = ErrorKind.RATE_LIMITED
    elif status >= 500:
        kind = ErrorKind.PROVIDER_ERROR
    elif _is_context_too_long(data, message):
        kind = ErrorKind.CONTEXT_TOO_LONG
    elif _is_missing_model(data):
        kind = ErrorKind.MISSING_MODEL
    elif _is_invalid_model(data, message):
        kind = ErrorKind.INVALID_MODEL
    else:
        kind = ErrorKind.BAD_REQUEST
    return ProviderError(kind, message, status=status, body=body, retry_after=_retry_after(headers))


def provider_message(data: Any) -> str:
    """The human part of an error body, in any of the shapes providers use (see PROTOCOLS.md)."""
    if isinstance(data, list):
        return "; ".join(filter(None, (_validation_item(item) for item in data)))
    if not isinstance(data, dict):
        return str(data) if data is not None else ""
    error = data.get("error")
    if isinstance(error, dict):  # OpenAI and Anthropic
        return provider_message(error)
    if isinstance(error, str) and error:
        return error
    message = data.get("message")
    if isinstance(message, str):
        nested = _json_or_none(message) if message.lstrip().startswith(("{", "[")) else None
        return provider_message(nested) if nested is not None else message
    if message is not None:
        return provider_message(message)
    detail = data.get("detail")
    if isinstance(detail, str):
        return detail
    if detail is not None:
        return provider_message(detail)
    return ""


def _validation_item(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    loc = [str(part) for part in item.get("loc", []) if part != "body"]
    msg = str(item.get("msg", ""))
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def _is_missing_model(data: Any) -> bool:
    for item in _validation_items(data):
        loc = item.get("loc") or []
        if item.get("type") == "missing" and loc and loc[-1] == "model":
            return True
    return False


def _validation_items(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        return []
    for holder in (data, data.get("message")):
        if isinstance(holder, dict) and isinstance(holder.get("detail"), list):
            return [i for i in holder["detail"] if isinstance(i, dict)]
    return []


def _is_context_too_long(data: Any, message: str) -> bool:
    fields = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), dict) else data
    if isinstance(fields, dict) and (str(fields.get("code")) in _CONTEXT_CODES or fields.get("type") in _CONTEXT_CODES):
        return True
    return bool(_CONTEXT_TOO_LONG.search(message))


def _is_invalid_model(data: Any, message: str) -> bool:
    fields = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), dict) else data
    if isinstance(fields, dict) and (
        fields.get("type") == "invalid_model" or fields.get("code") in ("1500", "unknown_model", "model_not_found")
    ):
        return True
    return bool(_INVALID_MODEL.search(message))


def _retry_after(headers: dict[str, str]) -> float | None:
    """Retry-After in seconds, within [0, 1 h]; None when absent or not a finite number."""
    try:
        seconds = float(headers["retry-after"])
    except (KeyError, ValueError):
        return None
    return min(max(0.0, seconds), 3600.0) if math.isfinite(seconds) else None


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _snippet(text: str, limit: int = 200) -> str:
    title = re.search(r"<title>(.*?)</title>", text, re.I | re.S)
    if title:
        return f"an HTML page titled {title.group(1).strip()!r}"
    flat = " ".join(text.split())
    return flat[:limit] + ("…" if len(flat) > limit else "")
