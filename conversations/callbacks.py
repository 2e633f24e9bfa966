"""Posting a call's outcome to its integration's callback URL: signed, one try per call of `callback_try`.

The outbox (conversations/outbox.py) decides when to try and whether to try again; this module makes one
try and records it as a CallbackAttempt, durably: a callback that was delivered keeps its row even if the
database blinked meanwhile.
"""

from __future__ import annotations

import json
import time

from connectors import crypto, http
from connectors.errors import TRANSIENT_KINDS

from .inbound import call_outcome
from .models import CallbackAttempt, Outbound
from .tries import TryResult, durably, retry_after

SIGNATURE_HEADER = "X-Switchboard-Signature"
DELIVERY_HEADER = "X-Switchboard-Delivery"


def callback_body(row: Outbound) -> bytes:
    """A call's outcome (`call.finished`), or a message of the team (`message.staff`)."""
    if row.call_id:
        outcome = call_outcome(row.call.latest_attempt())
        return json.dumps(
            {"event": "call.finished", "delivery_id": row.pk, "contact": row.conversation.contact, **outcome}
        ).encode()
    message = row.message
    return json.dumps(
        {
            "event": "message.staff",
            "delivery_id": row.pk,
            "contact": row.conversation.contact,
            "conversation_id": row.conversation_id,
            "message_id": message.pk,
            "reply": message.content,
            "sent_by": message.sent_by.get_username() if message.sent_by else None,
            "sent_at": message.created_at.isoformat(),
        }
    ).encode()


def callback_try(row: Outbound) -> TryResult:
    """POST the outcome as JSON with an HMAC-SHA256 signature of the raw body; record the try."""
    integration = row.conversation.integration
    if integration is None or not integration.callback_url:
        return TryResult(False, "The integration has no callback URL any more, so nothing was sent.")
    record = CallbackAttempt(call_id=row.call_id, outbound=row, attempt=row.tries, url=integration.callback_url)
    try:
        secret = crypto.decrypt(integration.callback_secret_encrypted)
    except crypto.SecretUnreadable:
        record.error = "The integration has no readable signing secret; make a new one on its page."
        durably(record.save)
        return TryResult(False, record.error)  # a retry cannot fix this
    body = callback_body(row)
    started = time.monotonic()
    transient, wait = False, None
    try:
        answer = http.outbound_request(
            "POST",
            integration.callback_url,
            headers={
                "Content-Type": "application/json",
                SIGNATURE_HEADER: crypto.body_signature(secret, body),
                DELIVERY_HEADER: str(row.pk),
            },
            body=body,
            timeout=10,
            connect_timeout=5,
            limit=1024 * 1024,  # the receiver's answer is not used, only its status
        )
        record.http_status = answer.status
        wait = retry_after(answer.headers)
    except http.OutboundError as error:
        record.error = error.message[:500]
        transient = error.kind in TRANSIENT_KINDS  # a URL the guard refuses stays refused
    record.latency_ms = round((time.monotonic() - started) * 1000)
    durably(record.save)
    status = record.http_status or 0
    if 200 <= status < 300:
        return TryResult(True)
    if status:
        record.error = f"The callback URL answered HTTP {status}."
        transient = status == 429 or status >= 500
    return TryResult(False, record.error, transient=transient, retry_after=wait)
