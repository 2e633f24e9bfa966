"""Replies out to WhatsApp customers through Meta's Graph API: one try of an outbound row at a time.

Guarantees, and how they are kept:
- A reply longer than WhatsApp's 4,096 characters goes in parts, in order, broken where a person would
  break it (formatting.whatsapp_parts: a paragraph, a sentence, a space); each part Meta accepted is on
  record once (WhatsAppSend, unique per outbound row and part), and a later try resumes after the last one.
- Each part's try is recorded durably: a part Meta took is never sent again for want of a record.
- Only what a retry can fix is retried (the outbox decides when): network errors, 5xx, 429 and Meta's
  throughput codes; 131026 (undeliverable), 131047 (outside the 24-hour window) and 190 (token) are not.
"""

from __future__ import annotations

import json
from typing import Any

from django.db import IntegrityError, transaction

from connectors import crypto, http
from connectors.errors import TRANSIENT_KINDS

from .. import payloads
from ..contacts import whatsapp_recipient
from ..models import Outbound, WhatsAppSend
from ..tries import TryResult, durably, retry_after
from .formatting import whatsapp_parts

# Graph API error codes worth another try: throughput, pair rate limit, unknown/temporary.
TRANSIENT_CODES = {130429, 131056, 131000, 2, 4}


def whatsapp_try(row: Outbound) -> TryResult:
    """Send the row's text to its customer in parts of at most 4,096 characters, resuming after the parts
    Meta accepted on earlier tries; each part's try is a WhatsAppSend row, recorded durably."""
    conversation = row.conversation
    channel = conversation.channel
    if channel is None:
        return TryResult(False, "The conversation has no WhatsApp channel any more, so nothing was sent.")
    pieces = whatsapp_parts(row.text)
    # Parts are sent in order, so the parts delivered by earlier tries are the first ones.
    done = max(row.whatsapp_sends.exclude(message_id="").values_list("part", flat=True), default=0)
    url = f"{channel.graph_base_url.rstrip('/')}/{channel.graph_version}/{channel.phone_number_id}/messages"
    try:
        token = crypto.decrypt(channel.access_token_encrypted)
    except crypto.SecretUnreadable as error:
        return TryResult(False, str(error))
    quoted = row.call.message.external_id if row.call_id and row.call.message_id else None
    for n, piece in enumerate(pieces[done:], start=done):
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": whatsapp_recipient(conversation.contact),
            "type": "text",
            "text": {"preview_url": False, "body": piece},
        }
        if n == 0 and quoted:
            body["context"] = {"message_id": quoted}  # quote the customer's message
        record = WhatsAppSend(call_id=row.call_id, outbound=row, attempt=row.tries, part=n + 1)
        transient, wait = False, None
        try:
            answer = http.outbound_request(
                "POST",
                url,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                body=json.dumps(body).encode(),
                timeout=15,
                connect_timeout=5,
                limit=256 * 1024,
            )
            record.http_status = answer.status
            data = _json(answer.body)
            if 200 <= answer.status < 300:
                record.message_id = payloads.printable(str(((data.get("messages") or [{}])[0]).get("id", "")))[:200]
            else:
                error = data.get("error", {}) if isinstance(data.get("error"), dict) else {}
                record.error_code = error.get("code") if isinstance(error.get("code"), int) else None
                record.error = payloads.printable(str(error.get("message", answer.text[:300])))[:2000]
                transient = record.error_code in TRANSIENT_CODES or answer.status >= 500 or answer.status == 429
                wait = retry_after(answer.headers)
        except http.OutboundError as error:
            record.error = f"Could not reach the Graph API: {error.message}"
            transient = error.kind in TRANSIENT_KINDS  # a URL the guard refuses stays refused
        durably(lambda record=record: _save_once(record))
        if not record.message_id:
            # 131026 undeliverable, 131047 outside the 24 h window, 190 token: a retry will not help.
            reason = record.error or f"The Graph API answered HTTP {record.http_status} without a message id."
            return TryResult(False, f"Part {n + 1} of {len(pieces)}: {reason}", transient=transient, retry_after=wait)
    return TryResult(True)


def _save_once(record: WhatsAppSend) -> None:
    """Save a part's try; a delivered part already on record (an insert retried after an unclear commit)
    is left as it is."""
    try:
        with transaction.atomic():
            record.save()
    except IntegrityError:
        if not record.message_id:
            raise


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
