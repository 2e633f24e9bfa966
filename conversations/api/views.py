"""The inbound API: `POST /api/v1/messages`, `GET /api/v1/calls/{id}`, and a drop-in `POST /api/v1/chat/completions`.

Every answer is JSON, errors included: `{"error": {"field", "message"}}` naming the field and the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from config.errors import service_unavailable

from .. import payloads, services
from ..inbound import Refused, call_outcome, chat_receive, message_receive, wait_for
from ..models import Call, Integration
from .tokens import integration_for

LAST_USED_PRECISION = timedelta(minutes=1)


def header(request: HttpRequest, name: str) -> str:
    """A request header as the client wrote it: HTTP headers travel as bytes, which WSGI hands over as
    Latin-1; UTF-8 clients (an Idempotency-Key of "é") mean UTF-8."""
    value = request.headers.get(name, "")
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


SEND_TOKEN = (
    "Send the integration's token as 'Authorization: Bearer sb_…' (shown once when the integration was created)."
)


def _error(status: int, field: str, message: str) -> JsonResponse:
    return JsonResponse({"error": {"field": field, "message": message}}, status=status)


def api(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Bearer-token authentication, a JSON body, and 4xx JSON answers for refused input."""

    @csrf_exempt  # token-authenticated: no cookies, so no cross-site request to forge
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> JsonResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if not header.strip():
            return _error(401, "Authorization", f"No token was sent. {SEND_TOKEN}")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "Authorization", f"The Authorization header is not a Bearer token. {SEND_TOKEN}")
        integration = integration_for(token.strip())
        if integration is None:
            return _error(
                401,
                "Authorization",
                "The token matches no integration: it is mistyped, or it was replaced (rotated). Copy the "
                "integration's current token; an Admin can rotate it on the integration's page to get a new one.",
            )
        if not integration.is_active:
            return _error(401, "Authorization", "This integration is disabled. An Admin can enable it on its page.")
        now = timezone.now()
        if integration.last_used_at is None or now - integration.last_used_at > LAST_USED_PRECISION:
            # A write per request would serialise every API call on this row; a minute's precision is plenty.
            Integration.objects.filter(pk=integration.pk).update(last_used_at=now)
        payload: Any = {}
        if request.method == "POST":
            limit = settings.API_MAX_BODY_BYTES
            declared = request.headers.get("Content-Length") or "0"
            if not declared.isascii() or not declared.isdigit():
                return _error(400, "Content-Length", "Content-Length must be the body's size in bytes, a whole number.")
            try:
                size = int(declared)
                raw = request.body if size <= limit else b""
            except RequestDataTooBig:
                size = limit + 1
            if size > limit or len(raw) > limit:
                return _error(413, "body", f"The body is over {limit:,} bytes (API_MAX_BODY_BYTES). Send less.")
            try:
                payload = payloads.loads(raw or b"null")
            except payloads.PayloadError as refused:
                return _error(400, refused.field, refused.message)
            if not isinstance(payload, dict):
                return _error(400, "body", "The body must be a JSON object.")
        try:
            return view(request, integration, payload, *args, **kwargs)
        except Refused as refused:
            return _error(refused.status, refused.field, refused.message)

    return wrapper


def _wait_seconds(payload: dict[str, Any]) -> float:
    wait = payload.get("wait", 0)
    if not isinstance(wait, int | float) or isinstance(wait, bool) or wait < 0:
        raise Refused(400, "wait", '"wait" is a number of seconds to wait for the reply, 0 to 30.')
    return min(float(wait), settings.API_MAX_WAIT_SECONDS)


@require_POST
@api
def messages(request: HttpRequest, integration: Integration, payload: dict[str, Any]) -> JsonResponse:
    """Answer one customer message through a template, continuing the contact's conversation."""
    wait = _wait_seconds(payload)
    accepted = message_receive(
        integration=integration, payload=payload, idempotency_key=header(request, "Idempotency-Key")
    )
    if accepted.human:
        # A person holds the conversation: no provider call; their reply reaches the callback URL.
        body = {
            "call_id": None,
            "conversation_id": accepted.conversation_id,
            "message_id": accepted.message_id,
            "status": "human",
            "reply": None,
            "idempotent_replay": accepted.repeated,
        }
        return JsonResponse(body)
    call = accepted.call
    status_url = request.build_absolute_uri(reverse("api:call", args=[call.pk]))
    try:
        call = wait_for(call, wait) if wait else call.latest_attempt()
        body = call_outcome(call)
    except Exception as error:
        # The message is committed: whatever happens to the database now, never tell the client it failed
        # (a retry would be a second message). The status URL answers once the database is back.
        if not service_unavailable(error):
            raise
        body = {"call_id": call.pk, "conversation_id": call.conversation_id, "status": Call.Status.QUEUED}
    body["status_url"] = status_url
    body["idempotent_replay"] = accepted.repeated
    if body["status"] not in (Call.Status.SUCCEEDED, Call.Status.FAILED):
        return JsonResponse(body, status=202)
    return JsonResponse(body, status=200 if body["status"] == Call.Status.SUCCEEDED else 502)


@require_GET
@api
def call_status(request: HttpRequest, integration: Integration, payload: Any, pk: int) -> JsonResponse:
    call = Call.objects.filter(pk=pk, conversation__integration=integration).first()
    if call is None:
        return _error(404, "id", f"No call {pk} for this integration.")
    return JsonResponse(call_outcome(call))


@require_POST
@api
def chat_completions(request: HttpRequest, integration: Integration, payload: dict[str, Any]) -> JsonResponse:
    """The chat-completions shape in and out, so a platform wired to Mistral changes only base URL and key."""
    if payload.get("stream"):
        return _openai_error(
            400, 'stream is not supported here; send "stream": false.', "invalid_request_error", "stream"
        )
    user = payload.get("user")
    if user is not None and not isinstance(user, str):
        raise Refused(400, "user", '"user" is text naming the customer, e.g. their phone number or your user id.')
    contact = user or header(request, "X-Contact") or f"api:{integration.name}"
    try:
        call = chat_receive(integration=integration, payload=payload, contact=contact)
    except services.SendRefused as error:
        raise Refused(400, "messages", str(error)) from None
    connection = call.connection
    call = wait_for(call, min(connection.timeout_seconds * connection.max_attempts + 5, settings.API_CHAT_WAIT_SECONDS))
    if call.status == Call.Status.SUCCEEDED:
        return JsonResponse(
            {
                "id": f"cmpl-sb-{call.pk}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": call.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": call.reply_text},
                        "finish_reason": call.finish_reason or "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": call.prompt_tokens or 0,
                    "completion_tokens": call.completion_tokens or 0,
                    "total_tokens": call.total_tokens or 0,
                },
            }
        )
    if not call.finished:
        # Not a failure yet: the call is queued (the broker may be away) or slow. Retry-After tells SDKs when.
        response = _openai_error(
            503, f"No reply in time; the message is queued as call {call.pk} (/api/v1/calls/{call.pk}).", "timeout"
        )
        response["Retry-After"] = "5"
        # The call goes on: an SDK's automatic retry would make a second conversation and a second paid
        # call. OpenAI's and Mistral's SDKs honour this header.
        response["x-should-retry"] = "false"
        return response
    # The provider's failure, not the client's: a 401 here would read as "your Switchboard token is wrong".
    status = 429 if call.http_status == 429 else 502
    return _openai_error(
        status,
        f"{call.get_error_kind_display()} from the provider: {call.error_message} — {call.help.fix}",
        call.error_kind,
    )


@csrf_exempt
def not_found(request: HttpRequest) -> JsonResponse:
    return _error(404, "path", f"No API endpoint at {request.path}. The endpoints are listed at /api/docs/.")


def _openai_error(status: int, message: str, kind: str, field: str | None = None) -> JsonResponse:
    """OpenAI's error shape (its SDKs read it), with our `field` too, as every other error under /api/."""
    error = {"message": message, "type": kind, "param": field, "code": kind, "field": field or "request"}
    return JsonResponse({"error": error}, status=status)
