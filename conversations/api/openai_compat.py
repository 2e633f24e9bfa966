"""The drop-in endpoint: `POST /api/v1/chat/completions` and `GET /api/v1/models` in OpenAI's shapes, so a
platform or chat tool wired to Mistral or OpenAI changes only its base URL and key.

What an SDK does with an answer decides its status, because OpenAI's and Mistral's SDKs retry 408, 409, 429
and every 5xx unless told otherwise:

- a failure the request causes (its body, a model or connection the integration may not use, a model named
  in the request that the provider does not know, a context too long) is a 400 or 404, never retried;
- a failure of Switchboard's own connection (the provider refused our key, our configured model, our
  configuration) is a 502 with `x-should-retry: false`: one request reaches Switchboard and one the provider,
  and the client's own token is never blamed;
- a transient failure still failing after Switchboard's own retries (and fallbacks) is a 503 with
  `Retry-After`: a later try may work, so the SDK may make it.

`stream: true` is answered with server-sent events in OpenAI's chunk format ending with `data: [DONE]`. The
worker makes the provider call as always; the stream carries the finished reply.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_POST, require_safe

from config.errors import service_unavailable
from connectors.errors import TRANSIENT_KINDS, ErrorKind

from .. import services, store
from ..inbound import Refused, wait_for
from ..models import Call, Integration
from ..payloads import printable
from .chat import chat_receive
from .views import api, header, openai_error

# Kinds that are a fault of the connection as configured: its key, its model, its settings.
CONNECTION_KINDS = frozenset({ErrorKind.AUTH, ErrorKind.INVALID_MODEL, ErrorKind.MISSING_MODEL, ErrorKind.CONFIG})
# Kinds the request's own content causes, whatever the connection.
REQUEST_KINDS = frozenset({ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_TOO_LONG})
RETRY_AFTER_SECONDS = 5


@require_POST
@api
def chat_completions(request: HttpRequest, integration: Integration, payload: dict[str, Any]):
    stream = _flag("stream", payload.get("stream"))
    options = payload.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise Refused(400, "stream_options", '"stream_options" is an object, e.g. {"include_usage": true}.')
    include_usage = _flag("stream_options.include_usage", (options or {}).get("include_usage"))
    _refuse_unrelayed(payload)
    user = payload.get("user")
    if user is not None and not isinstance(user, str):
        raise Refused(400, "user", '"user" is text naming the customer, e.g. their phone number or your user id.')
    if user is not None and not user.strip():
        raise Refused(
            400, "user", '"user" is empty: send the customer\'s phone number or your user id, or leave it out.'
        )
    if user is None and "X-Contact" in request.headers and not header(request, "X-Contact").strip():
        raise Refused(400, "X-Contact", "The X-Contact header is empty: send the customer's id, or leave it out.")
    contact = user or header(request, "X-Contact") or f"api:{integration.name}"
    field = "user" if user else "X-Contact"
    try:
        call = chat_receive(integration=integration, payload=payload, contact=contact, contact_field=field)
    except services.SendRefused as error:
        raise Refused(400, "messages", str(error)) from None
    connection = call.connection
    seconds = min(connection.timeout_seconds * connection.max_attempts + 5, settings.API_CHAT_WAIT_SECONDS)
    # From here the request is taken: whatever happens, the answer names its call and never asks for a retry
    # that would make a second conversation and a second paid call (a database gone meanwhile included).
    try:
        latest = _with_loaded(wait_for(call, seconds, fresh=True), call)
        if latest.status == Call.Status.SUCCEEDED:
            if stream:
                response = StreamingHttpResponse(_chunks(latest, include_usage), content_type="text/event-stream")
                response["Cache-Control"] = "no-cache"
                return response
            return JsonResponse(_completion(latest))
        return _failure(latest)
    except Exception as error:
        if not service_unavailable(error):
            raise
        return _still_queued(call)


def _with_loaded(latest: Call, accepted: Call) -> Call:
    """The newest attempt with the conversation and connection the request already holds (when they are
    the same rows), so that answering reads nothing more from the database."""
    if latest.conversation_id == accepted.conversation_id:
        latest.conversation = accepted.conversation
    if latest.connection_id == accepted.connection_id:
        latest.connection = accepted.connection
    return latest


# PostgreSQL writes a commit that did not wait for the disk (store.chat_accept's) within 3 x wal_writer_delay,
# 0.6 s by default: a request older than this has its rows on disk even if the database cannot say so now.
ON_DISK_AFTER_SECONDS = 2.0


def _still_queued(call: Call) -> JsonResponse:
    """Not answered in time, or the database went away while waiting: the call goes on, and Retry-After says
    when to read it instead of sending again."""
    try:
        store.durable()  # told it is queued: it must outlive a crash (store.chat_accept did not wait for the disk)
    except Exception as error:
        if not service_unavailable(error) or (timezone.now() - call.queued_at).total_seconds() < ON_DISK_AFTER_SECONDS:
            raise  # taken a moment ago and the database is away: its rows may be lost, and a retry is right
    response = openai_error(
        503, f"No reply in time; the message is queued as call {call.pk} (/api/v1/calls/{call.pk}).", "timeout"
    )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["x-should-retry"] = "false"
    return response


def _flag(field: str, value: Any) -> bool:
    """A true/false field: JSON's true or false (or left out). 1 and 0 are refused: Python would take them."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise Refused(400, field, f'"{field}" is true or false.')


# OpenAI fields that change what the reply is, which Switchboard does not relay: dropping them silently would
# answer another question than the one asked. Other OpenAI fields (top_p, stop, seed, the penalties,
# logprobs…) are taken and not sent.
UNRELAYED = {
    "tools": "Tool calls are not relayed: leave out tools and tool_choice.",
    "tool_choice": "Tool calls are not relayed: leave out tools and tool_choice.",
    "functions": "Function calls are not relayed: leave out functions and function_call.",
    "function_call": "Function calls are not relayed: leave out functions and function_call.",
}


def _refuse_unrelayed(payload: dict[str, Any]) -> None:
    for field in ("tools", "functions"):
        if payload.get(field) is not None and not isinstance(payload[field], list):
            raise Refused(400, field, f'"{field}" is a list (and is not relayed: leave it out).')
    for field in ("tool_choice", "function_call"):
        if payload.get(field) is not None and not isinstance(payload[field], str | dict):
            raise Refused(400, field, f'"{field}" is "none", "auto", "required" or an object.')
    for field, why in UNRELAYED.items():
        if payload.get(field) not in (None, [], "none"):
            raise Refused(400, field, why)
    _check_taken(payload)
    n = payload.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise Refused(400, "n", 'Switchboard answers with one choice: leave out "n" or send 1.')
    modalities = payload.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise Refused(400, "modalities", 'Only text replies are relayed: leave out "modalities" or send ["text"].')
    if payload.get("audio") is not None:
        raise Refused(400, "audio", 'Audio replies are not relayed: leave out "audio".')
    response_format = payload.get("response_format")
    if response_format is not None and response_format not in ({"type": "text"},):
        raise Refused(
            400,
            "response_format",
            'Only text replies are relayed: leave out "response_format" (JSON modes are not relayed).',
        )


def _number(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def _whole(value: Any, low: float = float("-inf"), high: float = float("inf")) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _stop(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value)
    )


def _bias(value: Any) -> bool:
    return isinstance(value, dict) and all(_number(b, -100, 100) for b in value.values())


# OpenAI fields taken and not sent (README): still refused when OpenAI itself would refuse them, so that a
# request that works here works at OpenAI and the other way round. (field, accepts, what it is.)
TAKEN = [
    ("top_p", lambda v: _number(v, 0, 1), "a number from 0 to 1"),
    ("presence_penalty", lambda v: _number(v, -2, 2), "a number from -2 to 2"),
    ("frequency_penalty", lambda v: _number(v, -2, 2), "a number from -2 to 2"),
    ("seed", _whole, "a whole number"),
    ("stop", _stop, "text, or a list of up to 4 texts"),
    ("logprobs", lambda v: isinstance(v, bool), "true or false"),
    ("top_logprobs", lambda v: _whole(v, 0, 20), "a whole number from 0 to 20"),
    ("logit_bias", _bias, "an object of token ids to numbers from -100 to 100"),
    ("parallel_tool_calls", lambda v: isinstance(v, bool), "true or false"),
    ("metadata", lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()), "an object of texts"),
]


def _check_taken(payload: dict[str, Any]) -> None:
    for field, accepts, what in TAKEN:
        value = payload.get(field)
        if value is not None and not accepts(value):
            raise Refused(400, field, f'"{field}" is {what} (taken, not sent to the provider).')
    unknown = sorted(set(payload.get("stream_options") or {}) - {"include_usage"})
    if unknown:
        raise Refused(
            400, "stream_options", f'"stream_options" holds only include_usage, not {printable(unknown[0])!r}.'
        )


def _completion(call: Call) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-sb-{call.pk}",
        "object": "chat.completion",
        "created": int(call.finished_at.timestamp()) if call.finished_at else int(time.time()),
        "model": call.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": call.reply_text},
                "finish_reason": call.finish_reason or "stop",
            }
        ],
        "usage": _usage(call),
    }


def _usage(call: Call) -> dict[str, int]:
    return {
        "prompt_tokens": call.prompt_tokens or 0,
        "completion_tokens": call.completion_tokens or 0,
        "total_tokens": call.total_tokens or 0,
    }


def _chunks(call: Call, include_usage: bool) -> Iterator[str]:
    """The finished reply as OpenAI's stream sends one: the role, the content, the finish reason, [DONE]."""
    base = {
        "id": f"chatcmpl-sb-{call.pk}",
        "object": "chat.completion.chunk",
        "created": int(call.finished_at.timestamp()) if call.finished_at else int(time.time()),
        "model": call.model,
    }
    deltas = [
        ({"role": "assistant", "content": ""}, None),
        ({"content": call.reply_text}, None),
        ({}, call.finish_reason or "stop"),
    ]
    for delta, finish_reason in deltas:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        if include_usage:
            chunk["usage"] = None
        yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    if include_usage:
        yield f"data: {json.dumps({**base, 'choices': [], 'usage': _usage(call)})}\n\n"
    yield "data: [DONE]\n\n"


def _failure(call: Call) -> JsonResponse:
    if not call.finished:
        # Not a failure yet: queued (the broker may be away) or slow. The call goes on, so an SDK's retry would
        # make a second conversation and a second paid call.
        return _still_queued(call)
    # The call's id, so that whoever reads the error (a platform's log, support staff) can find the call.
    words = f"{call.error_summary} — {call.help.fix} Logged as call {call.pk} (GET /api/v1/calls/{call.pk})."
    named_model = bool((call.conversation.overrides or {}).get("model"))
    if call.error_kind in REQUEST_KINDS:
        code = "context_length_exceeded" if call.error_kind == ErrorKind.CONTEXT_TOO_LONG else call.error_kind
        return openai_error(400, f"The provider refused the request: {words}", code, "messages")
    refused_model = call.error_kind in (ErrorKind.INVALID_MODEL, ErrorKind.MISSING_MODEL) or (
        call.error_kind == ErrorKind.AUTH and call.http_status == 403  # a model not on the plan
    )
    if refused_model and named_model:
        # The model the request named, not the connection's: the client can fix it, in its own terms.
        return openai_error(
            404,
            f"The provider does not offer the model {call.model!r} here ({call.error_summary}). "
            "GET /api/v1/models lists the models and connections you may name. "
            f"Logged as call {call.pk} (GET /api/v1/calls/{call.pk}).",
            "model_not_found",
            "model",
        )
    if call.error_kind in TRANSIENT_KINDS:
        response = openai_error(503, f"The provider is failing for now: {words}", call.error_kind)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    # Switchboard's connection (its key, model or configuration), or a reply it could not read: a retry of
    # the same request cannot help, and a 401 here would read as "your Switchboard token is wrong".
    response = openai_error(502, f"Switchboard's connection {call.connection} failed: {words}", call.error_kind)
    response["x-should-retry"] = "false"
    return response


@require_safe  # GET, and HEAD as HTTP allows for any GET
@api
def models(request: HttpRequest, integration: Integration, payload: Any) -> JsonResponse:
    """What `model` may name: each connection the integration may use (by name), and the models of its
    default connection (its own, and those the provider listed at the last check)."""
    data: dict[str, dict[str, Any]] = {}
    for connection in integration.connections.order_by("name"):
        created = int(connection.created_at.timestamp()) if getattr(connection, "created_at", None) else 0
        data.setdefault(connection.name, {"id": connection.name, "object": "model", "created": created,
                                          "owned_by": "switchboard"})  # fmt: skip
    default = integration.default_connection if getattr(integration, "default_allowed", True) else None
    if default is not None:
        for name in [default.model, *(default.available_models or [])]:
            if name:
                data.setdefault(name, {"id": name, "object": "model", "created": 0, "owned_by": default.name})
    return JsonResponse({"object": "list", "data": list(data.values())})
