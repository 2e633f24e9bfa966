"""Posting a finished call to its integration's callback URL, signed, retried, and recorded."""

from __future__ import annotations

import json
import time

import requests

from connectors import crypto, http
from connectors.errors import ProviderError
from connectors.safety import check_reachable

from .inbound import call_outcome
from .models import Call, CallbackAttempt

SIGNATURE_HEADER = "X-Switchboard-Signature"


class CallbackFailed(Exception):
    """A try that may succeed later (network, timeout, 429, 5xx): the task retries it with backoff."""


def callback_deliver(*, call_id: int, attempt: int) -> CallbackAttempt | None:
    """POST the call's outcome as JSON with an HMAC-SHA256 signature of the raw body; record the try."""
    call = Call.objects.select_related("conversation__integration").get(pk=call_id)
    integration = call.conversation.integration
    if integration is None or not integration.callback_url:
        return None
    body = json.dumps({"event": "call.finished", "contact": call.conversation.contact, **call_outcome(call)}).encode()
    record = CallbackAttempt(call=call, attempt=attempt, url=integration.callback_url)
    started = time.monotonic()
    try:
        secret = crypto.decrypt(integration.callback_secret_encrypted)
    except crypto.SecretUnreadable:
        record.error = "The integration has no readable signing secret; set its callback URL again to make one."
        record.save()
        return record  # a retry cannot fix this
    try:
        check_reachable(integration.callback_url)
        response = http.session().post(
            integration.callback_url,
            data=body,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: crypto.body_signature(secret, body),
            },
            timeout=(5, 10),
            allow_redirects=False,
        )
        record.http_status = response.status_code
        response.close()
    except (requests.RequestException, ProviderError) as error:
        record.error = str(error)[:500]
    record.latency_ms = round((time.monotonic() - started) * 1000)
    record.save()
    if record.error or record.http_status == 429 or (record.http_status or 0) >= 500:
        raise CallbackFailed(f"callback for call {call_id} failed: {record.error or record.http_status}")
    return record
