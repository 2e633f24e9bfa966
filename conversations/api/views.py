"""The inbound API: `POST /api/v1/messages` and `GET /api/v1/calls/{id}`; the drop-in chat-completions endpoint
is in `openai_compat`.

Every answer is JSON, errors included: `{"error": {"field", "message", "type", "param", "code"}}` naming the
field and the fix.
"""

from __future__ import annotations

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
from django.views.decorators.http import require_POST, require_safe

from config import bodies
from config.errors import json_error, service_unavailable

from .. import payloads, store
from ..inbound import Refused, call_outcome, message_receive, wait_for
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


def api(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """Bearer-token authentication, a JSON body, and 4xx JSON answers for refused input."""

    @csrf_exempt  # token-authenticated: no cookies, so no cross-site request to forge
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> JsonResponse:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.strip().partition(" ")
        if not header.strip():
            return json_error(401, "Authorization", f"No token was sent. {SEND_TOKEN}")
        if scheme.lower() != "bearer" or not token.strip():
            return json_error(401, "Authorization", f"The Authorization header is not a Bearer token. {SEND_TOKEN}")
        integration = integration_for(token.strip())
        if integration is None:
            return json_error(
                401,
                "Authorization",
                "The token matches no integration: it is mistyped, or it was replaced (rotated). Copy the "
                "integration's current token; an Admin can rotate it on the integration's page to get a new one.",
            )
        if not integration.is_active:
            return json_error(401, "Authorization", "This integration is disabled. An Admin can enable it on its page.")
        now = timezone.now()
        if integration.last_used_at is None or now - integration.last_used_at > LAST_USED_PRECISION:
            # A write per request would serialise every API call on this row; a minute's precision is plenty.
            Integration.objects.filter(pk=integration.pk).update(last_used_at=now)
        payload: Any = {}
        if request.method == "POST":
            limit = settings.API_MAX_BODY_BYTES
            declared = request.headers.get("Content-Length") or "0"
            if not declared.isascii() or not declared.isdigit():
                return json_error(
                    400, "Content-Length", "Content-Length must be the body's size in bytes, a whole number."
                )
            try:
                if bodies.chunked(request):
                    raw = bodies.read_chunked(request, limit)
                    size = len(raw)
                else:
                    size = int(declared)
                    raw = request.body if size <= limit else b""
            except (RequestDataTooBig, bodies.TooLarge):
                size = limit + 1
            except bodies.Unreadable as unreadable:
                return json_error(400, "body", str(unreadable))
            if size > limit or len(raw) > limit:
                return json_error(413, "body", f"The body is over {limit:,} bytes (API_MAX_BODY_BYTES). Send less.")
            if len(raw) != size:  # a chunked body's size is what was read, so only a declared one can differ
                # The client stopped sending (or miscounted): a body cut short must not be taken as the message.
                return json_error(
                    400, "body", f"The body ended after {len(raw):,} of the {size:,} bytes Content-Length announced."
                )
            encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                return json_error(
                    415,
                    "Content-Encoding",
                    f"Bodies compressed with {payloads.printable(encoding[:40])!r} are not read here: send the JSON "
                    "uncompressed.",
                )
            if not raw:
                sent_chunked = bodies.chunked(request)
                return json_error(
                    400,
                    "body",
                    "The body is empty: send a JSON object, with Content-Length."
                    + (
                        " It came in chunks (Transfer-Encoding: chunked): if they held one, this server did not "
                        "decode them (Django's development server, which make run uses, does not), so send "
                        "Content-Length instead."
                        if sent_chunked
                        else ""
                    ),
                )
            try:
                payload = payloads.loads(raw)
            except payloads.PayloadError as refused:
                return json_error(400, refused.field, refused.message)
            if not isinstance(payload, dict):
                return json_error(400, "body", "The body must be a JSON object.")
        try:
            return view(request, integration, payload, *args, **kwargs)
        except Refused as refused:
            return json_error(refused.status, refused.field, refused.message, kind=refused.code)

    return wrapper


def _wait_seconds(payload: dict[str, Any]) -> float:
    wait = payload.get("wait", 0)
    longest = settings.API_MAX_WAIT_SECONDS
    if not isinstance(wait, int | float) or isinstance(wait, bool) or not 0 <= wait <= longest:
        raise Refused(
            400,
            "wait",
            f'"wait" is a number of seconds to wait for the reply, 0 to {longest:g}. For longer, send 0 and read '
            "status_url, or set a callback URL on the integration.",
        )
    return float(wait)


@require_POST
@api
def messages(request: HttpRequest, integration: Integration, payload: dict[str, Any]) -> JsonResponse:
    """Answer one customer message through a template, continuing the contact's conversation."""
    wait = _wait_seconds(payload)
    idempotency_key = header(request, "Idempotency-Key")
    if not idempotency_key and "Idempotency-Key" in request.headers:
        # Taken as no key, an empty one (a template whose id came out blank) would make every retry a second
        # message without a word; an empty message_id is refused the same way.
        raise Refused(
            400,
            "Idempotency-Key",
            "The Idempotency-Key header is empty. Send a key unique to this message (your platform's message id, "
            "or a UUID), or leave the header out.",
        )
    if "," in idempotency_key:
        # Two Idempotency-Key headers reach Django joined by a comma: taken as one key "a,b", a retry with
        # only "a" would be a second message.
        raise Refused(
            400,
            "Idempotency-Key",
            "Idempotency-Key holds a comma, which is how two such headers arrive: send one Idempotency-Key per "
            "request, without commas.",
        )
    accepted = message_receive(integration=integration, payload=payload, idempotency_key=idempotency_key)
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
        call = wait_for(call, wait, fresh=not accepted.repeated) if wait else store.latest_attempt(call)
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


@require_safe  # GET, and HEAD as HTTP allows for any GET
@api
def call_status(request: HttpRequest, integration: Integration, payload: Any, pk: int) -> JsonResponse:
    call = Call.objects.filter(pk=pk, conversation__integration=integration).first()
    if call is None:
        return json_error(404, "id", f"No call {pk} for this integration.")
    return JsonResponse(call_outcome(store.latest_attempt(call)))


@csrf_exempt
def not_found(request: HttpRequest) -> JsonResponse:
    return json_error(404, "path", f"No API endpoint at {request.path}. The endpoints are listed at /api/docs/.")


def openai_error(status: int, message: str, kind: str, field: str | None = None) -> JsonResponse:
    """An error of the drop-in endpoint, with its own type and code (its SDKs read them)."""
    return json_error(status, field or "request", message, kind=kind, param=field)
