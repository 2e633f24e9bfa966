"""Replies out to WhatsApp customers through Meta's Graph API, and read receipts for what they wrote: one try
of an outbound row at a time.

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
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from connectors import crypto, http
from connectors.errors import TRANSIENT_KINDS

from .. import payloads
from ..contacts import whatsapp_recipient
from ..models import Call, Outbound, WhatsAppChannel, WhatsAppSend
from ..tries import TryResult, durably, retry_after
from .formatting import whatsapp_parts

# Graph API error codes worth another try: throughput, pair rate limit, unknown/temporary.
TRANSIENT_CODES = {130429, 131056, 131000, 2, 4}
READ_RECEIPT_USEFUL = timedelta(minutes=2)


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
        answer = _graph_post(channel, token, body)
        record = WhatsAppSend(
            call_id=row.call_id,
            outbound=row,
            attempt=row.tries,
            part=n + 1,
            http_status=answer.status,
            error_code=answer.code,
            error=answer.error,
        )
        if answer.ok:
            record.message_id = payloads.printable(str(((answer.data.get("messages") or [{}])[0]).get("id", "")))[:200]
        durably(lambda record=record: _save_once(record))
        if not record.message_id:
            # 131026 undeliverable, 131047 outside the 24 h window, 190 token: a retry will not help.
            reason = record.error or f"The Graph API answered HTTP {record.http_status} without a message id."
            return TryResult(
                False, f"Part {n + 1} of {len(pieces)}: {reason}", transient=answer.transient, retry_after=answer.wait
            )
    return TryResult(True)


def read_try(row: Outbound) -> TryResult:
    """Mark the customer's message read (blue ticks), with "typing…" while a bot answer is on its way.

    Meta shows the indicator until the reply arrives or for 25 seconds. A receipt is only worth sending
    while the customer is still looking: one that could not go out within READ_RECEIPT_USEFUL is dropped.
    """
    conversation, message = row.conversation, row.message
    channel = conversation.channel
    if channel is None or message is None or not message.external_id:
        return TryResult(False, "There is no WhatsApp message to mark read, so nothing was sent.")
    if timezone.now() - row.created_at > READ_RECEIPT_USEFUL:
        return TryResult(False, "Not sent: a read receipt this late would tell the customer nothing.")
    try:
        token = crypto.decrypt(channel.access_token_encrypted)
    except crypto.SecretUnreadable as error:
        return TryResult(False, str(error))
    body: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": message.external_id}
    if Call.objects.filter(conversation=conversation, status__in=[Call.Status.QUEUED, Call.Status.RUNNING]).exists():
        body["typing_indicator"] = {"type": "text"}
    answer = _graph_post(channel, token, body)
    if answer.ok:
        return TryResult(True)
    return TryResult(False, answer.error, transient=answer.transient, retry_after=answer.wait)


@dataclass(frozen=True)
class GraphAnswer:
    status: int | None
    data: dict[str, Any]
    error: str = ""
    code: int | None = None
    transient: bool = False
    wait: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _graph_post(channel: WhatsAppChannel, token: str, body: dict[str, Any]) -> GraphAnswer:
    """One POST to the channel's messages endpoint, read as Meta answers: what went wrong, and whether a
    retry could help."""
    url = f"{channel.graph_base_url.rstrip('/')}/{channel.graph_version}/{channel.phone_number_id}/messages"
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
    except http.OutboundError as error:
        # A URL the guard refuses stays refused; the network may come back.
        return GraphAnswer(
            None, {}, f"Could not reach the Graph API: {error.message}", transient=error.kind in TRANSIENT_KINDS
        )
    data = _json(answer.body)
    if 200 <= answer.status < 300:
        return GraphAnswer(answer.status, data)
    error = data.get("error", {}) if isinstance(data.get("error"), dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    return GraphAnswer(
        answer.status,
        data,
        payloads.printable(str(error.get("message", answer.text[:300])))[:2000],
        code,
        transient=code in TRANSIENT_CODES or answer.status >= 500 or answer.status == 429,
        wait=retry_after(answer.headers),
    )


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
