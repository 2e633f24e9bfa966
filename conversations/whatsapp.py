"""The WhatsApp Cloud API channel: verified webhooks in, conversations by wa_id, replies out via the Graph API.

Meta delivers webhooks at least once and expects a 200 within seconds, so the webhook only verifies, records
and queues; the model call and the send happen in workers. A message id seen before is acknowledged and
otherwise ignored.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from config.errors import service_unavailable
from connectors import crypto, http
from connectors.errors import TRANSIENT_KINDS

from . import payloads, services
from .models import Call, Conversation, Message, Outbound, WhatsAppChannel, WhatsAppRefusal, WhatsAppSend

logger = logging.getLogger(__name__)
MAX_BODY = 4096  # characters in one WhatsApp text message
# Graph API error codes worth another try: throughput, pair rate limit, unknown/temporary.
TRANSIENT_CODES = {130429, 131056, 131000, 2, 4}


@dataclass(frozen=True)
class Incoming:
    message_id: str
    wa_id: str
    text: str


@dataclass(frozen=True)
class Refusal:
    """A message taken out of a delivery instead of blocking it, with the reason staff will read."""

    reason: str
    message_id: str = ""
    sender: str = ""
    excerpt: str = ""


@dataclass
class Received:
    calls: list[Call]
    refused: list[Refusal]


class WebhookRefused(Exception):
    """A webhook body that is not Meta's: wrong signature (403) or not JSON (400)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def sign(channel: WhatsAppChannel, raw_body: bytes) -> str:
    """X-Hub-Signature-256: HMAC-SHA256 of the raw body (never re-serialised JSON) with the app secret."""
    return crypto.body_signature(crypto.decrypt(channel.app_secret_encrypted), raw_body)


def webhook_accept(*, channel: WhatsAppChannel, raw_body: bytes, signature: str) -> Received:
    """Check the signature in constant time, then queue the new customer messages in the body."""
    if not hmac.compare_digest(sign(channel, raw_body).encode(), (signature or "").encode()):
        raise WebhookRefused(403, "X-Hub-Signature-256 does not match the app secret.")
    try:
        payload = payloads.loads(raw_body, strict=False)  # each message is checked on its own
    except payloads.PayloadError as error:
        raise WebhookRefused(400, error.message) from None
    return channel_receive(channel=channel, payload=payload)


# What a sender id may be: Meta's wa_id is digits; usernames' scoped ids are letters, digits and a few marks.
_SENDER = re.compile(r"\+?[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
MAX_MESSAGE_ID = 200


def read_delivery(payload: Any, phone_number_id: str | None = None) -> tuple[list[Incoming], list[Refusal]]:
    """Every customer message in a webhook body, and every part that could not be read as one, with why.

    Status updates are not messages and are skipped. Meta sends all of an app's numbers to one callback
    URL: with `phone_number_id`, only that number's messages are read.
    """
    found: list[Incoming] = []
    refused: list[Refusal] = []
    entries = payload.get("entry", []) if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return found, [Refusal("The delivery is not a JSON object with an entry list.", excerpt=_excerpt(payload))]
    for entry in entries:
        changes = entry.get("changes", []) if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else [None]:
            value = change.get("value", {}) if isinstance(change, dict) else None
            if not isinstance(value, dict):
                refused.append(Refusal("A change in the delivery has no value object.", excerpt=_excerpt(entry)))
                continue
            metadata = value.get("metadata")
            number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            if phone_number_id and number and number != phone_number_id:
                continue
            messages = value.get("messages", [])
            if not isinstance(messages, list):
                refused.append(Refusal("The change's messages field is not a list.", excerpt=_excerpt(messages)))
                continue
            for message in messages:
                read = _read_message(message)
                (found if isinstance(read, Incoming) else refused).append(read)
    return found, refused


def incoming_messages(payload: Any, phone_number_id: str | None = None) -> list[Incoming]:
    return read_delivery(payload, phone_number_id)[0]


def _read_message(message: Any) -> Incoming | Refusal:
    if not isinstance(message, dict):
        return Refusal("A message is not a JSON object.", excerpt=_excerpt(message))
    message_id, sender = message.get("id"), message.get("from")
    usable_id = message_id if isinstance(message_id, str) and payloads.unstorable(message_id) is None else ""
    usable_sender = sender if isinstance(sender, str) and _SENDER.fullmatch(sender) else ""

    def refuse(reason: str) -> Refusal:
        return Refusal(reason, usable_id[:MAX_MESSAGE_ID], usable_sender, _excerpt(message))

    if not isinstance(message_id, str) or not message_id:
        return refuse("The message has no id as text, so it could not be answered once and only once.")
    if len(message_id) > MAX_MESSAGE_ID:
        return refuse(f"The message id is {len(message_id):,} characters; Meta's are under {MAX_MESSAGE_ID}.")
    if not usable_sender:
        return refuse("The message's sender (from) is missing or not a WhatsApp id.")
    bad = payloads.first_unstorable(message)
    if bad:
        return refuse(f"The message's {bad[0]} {bad[1]}.")
    text = _text_of(message)
    if text is None:
        return refuse(f"The message's {message.get('type', 'text')!s:.40} part is not in Meta's shape.")
    return Incoming(message_id, sender, text)


def _excerpt(value: Any, limit: int = 2000) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = "[unreadable]"
    return payloads.printable(text[:limit])


def _text_of(message: dict[str, Any]) -> str | None:
    """Text for the model whatever the type: the body, a button's title, a caption, or what was sent.

    None when the part that should carry the text has the wrong shape (a list where a string belongs).
    """
    kind = message.get("type", "unknown")
    if not isinstance(kind, str):
        return None
    part = message.get(kind, {})
    if not isinstance(part, dict):
        return None
    if kind == "text":
        body = part.get("body", "")
        return body if isinstance(body, str) else None
    if kind == "interactive":
        reply = part.get("button_reply") or part.get("list_reply") or {}
        title = reply.get("title", "[interactive reply]") if isinstance(reply, dict) else None
        return title if isinstance(title, str) else None
    if kind == "button":
        label = part.get("text", "[button]")
        return label if isinstance(label, str) else None
    if kind == "location":
        return f"[location {part.get('latitude')}, {part.get('longitude')}] {part.get('name', '')}".strip()
    if kind == "reaction":
        return f"[reaction {part.get('emoji', '')}]"
    caption = part.get("caption")
    return f"[{kind}] {caption}" if isinstance(caption, str) and caption else f"[{kind}]"


def channel_receive(*, channel: WhatsAppChannel, payload: Any) -> Received:
    """Queue an answer for each new customer message and record each refusal; one never blocks another.

    Repeats of a message id are ignored (Meta delivers at least once). A database that is away stops the
    whole delivery (the webhook answers 503 and Meta delivers it again); anything else that goes wrong
    with one message is that message's refusal.
    """
    incoming, refused = read_delivery(payload, channel.phone_number_id)
    calls = []
    for message in incoming:
        if Message.objects.filter(external_id=message.message_id).exists():
            continue
        try:
            calls.append(_queue_answer(channel, message))
        except IntegrityError:  # the same message id arrived twice at once: the other delivery has it
            continue
        except (services.SendRefused, services.TemplateVariableError) as error:
            refused.append(Refusal(str(error), message.message_id, message.wa_id, _excerpt(message.text, 500)))
        except Exception as error:
            if service_unavailable(error):
                raise
            logger.exception("WhatsApp message %s could not be stored", message.message_id)
            reason = f"Switchboard could not store this message ({type(error).__name__}); the error is logged."
            refused.append(Refusal(reason, message.message_id, message.wa_id, _excerpt(message.text, 500)))
    if refused:
        _record_refusals(channel, refused)
    return Received(calls, refused)


def _queue_answer(channel: WhatsAppChannel, incoming: Incoming) -> Call:
    text = incoming.text.strip() or "[empty message]"
    with transaction.atomic():
        conversation = (
            Conversation.objects.filter(channel=channel, contact=incoming.wa_id).order_by("-updated_at").first()
        )
        if conversation is None:
            return services.call_send(
                connection=channel.connection,
                template=channel.template,
                customer_message=text,
                variables=channel.variables,
                contact=incoming.wa_id,
                channel=channel,
                external_id=incoming.message_id,
            )
        return services.conversation_reply(
            conversation=conversation, customer_message=text, external_id=incoming.message_id
        )


def _record_refusals(channel: WhatsAppChannel, refused: list[Refusal]) -> None:
    """One row per refusal, once: Meta delivering the same body again adds nothing."""
    seen = set(
        WhatsAppRefusal.objects.filter(
            channel=channel, message_id__in=[r.message_id for r in refused if r.message_id]
        ).values_list("message_id", "reason")
    )
    rows = [
        WhatsAppRefusal(
            channel=channel, message_id=r.message_id, sender=r.sender, reason=r.reason[:2000], excerpt=r.excerpt
        )
        for r in refused
        if not (r.message_id and (r.message_id, r.reason[:2000]) in seen)
    ]
    WhatsAppRefusal.objects.bulk_create(rows)
    for r in rows:
        logger.warning("WhatsApp message %r from %r on %s refused: %s", r.message_id, r.sender, channel, r.reason)


def whatsapp_try(row: Outbound):
    """Send the row's text to its customer in parts of at most 4,096 characters, resuming after the parts
    Meta accepted on earlier tries; each part's try is a WhatsAppSend row, recorded durably."""
    from .outbox import TryResult, durably

    conversation = row.conversation
    channel = conversation.channel
    if channel is None:
        return TryResult(False, "The conversation has no WhatsApp channel any more, so nothing was sent.")
    pieces = _pieces(row.text)
    done = row.whatsapp_sends.filter(message_id__gt="").count()  # parts delivered by earlier tries, in order
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
            "to": conversation.contact,
            "type": "text",
            "text": {"preview_url": False, "body": piece},
        }
        if n == 0 and quoted:
            body["context"] = {"message_id": quoted}  # quote the customer's message
        record = WhatsAppSend(call_id=row.call_id, outbound=row, attempt=row.tries)
        transient = False
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
        except http.OutboundError as error:
            record.error = f"Could not reach the Graph API: {error.message}"
            transient = error.kind in TRANSIENT_KINDS  # a URL the guard refuses stays refused
        durably(record.save)
        if not record.message_id:
            # 131026 undeliverable, 131047 outside the 24 h window, 190 token: a retry will not help.
            reason = record.error or f"The Graph API answered HTTP {record.http_status} without a message id."
            return TryResult(False, f"Part {n + 1} of {len(pieces)}: {reason}", transient=transient)
    return TryResult(True)


def _pieces(text: str) -> list[str]:
    return [text[i : i + MAX_BODY] for i in range(0, len(text), MAX_BODY)] or [""]


def _json(raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
