"""Anthropic's Messages API: `POST {base}/messages` (see ../shared/PROTOCOLS.md, "Anthropic").

What differs from chat completions, and how it is handled:
- The API version is a connection setting with its own rules. `2023-06-01` takes the key in `x-api-key` and a
  temperature from 0 to 1; `2026-10-21` (what the official SDK 2.x sends) takes `Authorization: Bearer` and no
  temperature, top_p or top_k at all. A connection's own temperature is checked when it is saved
  (models.ProviderConnection.clean); one asked for per call (the console, the API) is refused with the
  reason, never dropped.
- `max_tokens` is required: the connection's, else DEFAULT_MAX_TOKENS.
- The system prompt is the top-level `system` field, never a message; the conversation starts with the
  customer, and turns of one role in a row (a burst, history after a failed call, a staff reply after an
  automatic text) are merged, because the API wants user and assistant to alternate.
- The reply is the text blocks of `content`; `stop_reason` is mapped to chat completions' finish_reason;
  usage is `input_tokens` and `output_tokens`.
- Errors come as `{"type": "error", "error": {"type": "authentication_error", "message": …}}`; 429 (with
  `retry-after`), 500 and 529 overloaded are retried, the others are not.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django.views.decorators.debug import sensitive_variables

from .. import chat_completions, http
from ..chat_completions import STORED_BODY_CHARS, ChatReply
from ..errors import ErrorKind, ProviderError

VERSIONS = {
    "2023-06-01": "2023-06-01 (x-api-key; temperature 0 to 1)",
    "2026-10-21": "2026-10-21 (Bearer key, as SDK 2.x sends; no temperature)",
}
DEFAULT_VERSION = "2023-06-01"
NO_SAMPLING_SINCE = "2026-10-21"  # temperature, top_p and top_k are "Extra inputs" from this version on
DEFAULT_MAX_TOKENS = 1024
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "pause_turn",
}


def temperature_problem(version: str, temperature: float | None) -> str | None:
    """Why this API version will not take this temperature, or None."""
    if temperature is None:
        return None
    if version >= NO_SAMPLING_SINCE:
        return (
            f"Anthropic's API version {version} takes no temperature (it answers 'Extra inputs are not permitted'). "
            "Leave the temperature empty, or use API version 2023-06-01."
        )
    if not 0 <= temperature <= 1:
        return f"Anthropic's temperature is from 0 to 1 (not OpenAI's 0 to 2); {temperature:g} is not."
    return None


class Messages:
    def __init__(self, base_url: str, version: str = DEFAULT_VERSION):
        self.base_url = base_url.rstrip("/")
        self.version = version
        self.url = f"{self.base_url}/messages"

    def temperature_problem(self, temperature: float | None) -> str | None:
        return temperature_problem(self.version, temperature)

    def body(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> dict[str, Any]:
        problem = temperature_problem(self.version, temperature)
        if problem:
            raise ProviderError(ErrorKind.CONFIG, f"{problem} Nothing was sent.")
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])
        turns: list[dict[str, str]] = []
        for message in messages:
            if message["role"] == "system":
                continue
            role = "assistant" if message["role"] == "assistant" else "user"
            if turns and turns[-1]["role"] == role:
                turns[-1] = {"role": role, "content": f"{turns[-1]['content']}\n\n{message['content']}"}
            else:
                turns.append({"role": role, "content": message["content"]})
        while turns and turns[0]["role"] != "user":  # history trimmed to a budget may begin with a reply
            turns.pop(0)
        body: dict[str, Any] = {"model": model, "max_tokens": max_tokens or DEFAULT_MAX_TOKENS, "messages": turns}
        if system:
            body["system"] = system
        if temperature is not None:
            body["temperature"] = temperature
        return body

    @sensitive_variables("api_key")
    def chat(self, *, api_key: str, body: dict[str, Any], timeout: float) -> ChatReply:
        status, text, headers = http.provider_request(
            "POST", self.url, api_key, body, timeout, auth=self._auth(api_key)
        )
        if status >= 300:
            raise classify(status, text, headers)
        return parse_reply(status, text)

    @sensitive_variables("api_key")
    def models(self, *, api_key: str, timeout: float) -> list[str]:
        status, text, headers = http.provider_request(
            "GET", f"{self.base_url}/models", api_key, None, timeout, auth=self._auth(api_key)
        )
        if status >= 300:
            raise classify(status, text, headers)
        try:
            return sorted(str(item["id"]) for item in json.loads(text)["data"])
        except (ValueError, KeyError, TypeError):
            raise ProviderError(
                ErrorKind.BAD_RESPONSE, "The model list is not in the expected shape.", status=status, body=text
            ) from None

    @sensitive_variables("api_key")
    def _auth(self, api_key: str) -> dict[str, str]:
        if self.version >= NO_SAMPLING_SINCE:
            return {"Authorization": f"Bearer {api_key}", "anthropic-version": self.version}
        return {"x-api-key": api_key, "anthropic-version": self.version}


def parse_reply(status: int, text: str) -> ChatReply:
    try:
        data = json.loads(text)
    except ValueError:
        raise ProviderError(
            ErrorKind.BAD_RESPONSE,
            f"The answer is not JSON: {chat_completions._snippet(text)}",
            status=status,
            body=text[:STORED_BODY_CHARS],
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise ProviderError(ErrorKind.BAD_RESPONSE, "The answer has no content blocks.", status=status, body=text)
    content = "".join(
        str(block.get("text", ""))
        for block in data["content"]
        if isinstance(block, dict) and block.get("type") == "text"
    ).replace("\x00", "")
    stop_reason = str(data.get("stop_reason") or "")
    if not content.strip():
        raise ProviderError(
            ErrorKind.BAD_RESPONSE,
            f"The provider returned an empty reply (stop_reason: {stop_reason or 'none'}).",
            status=status,
            body=text,
        )
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return ChatReply(
        content=content,
        finish_reason=FINISH_REASONS.get(stop_reason, stop_reason),
        model=str(data.get("model") or ""),
        response_id=str(data.get("id") or ""),
        prompt_tokens=chat_completions._int_or_none(usage.get("input_tokens")),
        completion_tokens=chat_completions._int_or_none(usage.get("output_tokens")),
        status=status,
        body=text[:STORED_BODY_CHARS],
    )


def classify(status: int, text: str, headers: Mapping[str, str] | None = None) -> ProviderError:
    """Anthropic's error types onto Switchboard's kinds; the status decides the rest, as for any provider."""
    error = chat_completions.classify(status, text, headers)
    data = chat_completions._json_or_none(text)
    details = data.get("error") if isinstance(data, dict) and isinstance(data.get("error"), dict) else {}
    if details.get("type") == "not_found_error" and "model" in error.message.lower():
        error.kind = ErrorKind.INVALID_MODEL
    return error
