"""Meta's webhook for a WhatsApp channel: signed deliveries in, each message stored or refused on its own.

Guarantees, and how they are kept:
- Only Meta's deliveries count: X-Hub-Signature-256 is checked in constant time against the raw body.
- Each message is answered once: Meta delivers at least once, and a message id seen before is acknowledged
  and otherwise ignored (a unique index settles two deliveries racing).
- One malformed message never blocks its neighbours: each message is read, checked (an id and a sender as
  text, no NUL or lone surrogate anywhere, its text part in Meta's shape) and stored or refused on its own.
  A correctly signed delivery is acknowledged (200) once every message is stored or its refusal recorded,
  with the reason, on the channel's page; a refusal is recorded once however often Meta delivers the body.
- Only a database that is away makes the webhook fail (503, from config/errors.py), so that Meta delivers
  again. Meta expects a 200 within seconds, so the webhook only verifies, records and queues: the model
  call and the send happen in workers.
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
from connectors import crypto

from .. import payloads, services
from ..models import Call, Message, WhatsAppChannel, WhatsAppRefusal
from .answer import message_answer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Incoming:
    message_id: str
    wa_id: str
    text: str
    media_type: str = ""  # what it is when it is not text: image, audio, document, location, sticker…


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
    if not channel.app_secret_encrypted:
        raise WebhookRefused(
            403, f"Channel {channel.name} has no app secret, so no delivery can be verified: set it in the admin."
        )
    try:
        secret = crypto.decrypt(channel.app_secret_encrypted)
    except crypto.SecretUnreadable:
        raise WebhookRefused(
            403, f"Channel {channel.name}'s app secret cannot be decrypted with FIELD_ENCRYPTION_KEY: set it again."
        ) from None
    return crypto.body_signature(secret, raw_body)


def webhook_accept(*, channel: WhatsAppChannel, raw_body: bytes, signature: str) -> Received:
    """Check the signature in constant time, then queue the new customer messages in the body."""
    if not hmac.compare_digest(sign(channel, raw_body).encode(), (signature or "").encode()):
        raise WebhookRefused(403, "X-Hub-Signature-256 does not match the app secret.")
    try:
        payload = payloads.loads(raw_body, strict=False)  # each message is checked on its own
    except payloads.PayloadError as error:
        raise WebhookRefused(400, error.message) from None
    received = channel_receive(channel=channel, payload=payload)
    for number, theirs in _other_numbers(payload, channel.phone_number_id).items():
        # Meta sends every number of an app to the one callback URL its app has: another channel's number in a
        # delivery the signature proves is Meta's is that channel's to answer. None with it: the messages are
        # this URL's refusals, so that they are seen rather than dropped.
        other = WhatsAppChannel.objects.filter(phone_number_id=number).first()
        if other is not None:
            more = channel_receive(channel=other, payload=theirs)
            received.calls.extend(more.calls)
            received.refused.extend(more.refused)
            continue
        reason = (
            f"Sent to phone number id {number}, which no WhatsApp channel here has (Meta sends every number of an "
            f"app to one callback URL). Add a channel with phone number id {number} to answer its messages."
        )
        unrouted = [Refusal(reason, m.message_id, m.wa_id, _excerpt(m.text, 500)) for m in incoming_messages(theirs)]
        _record_refusals(channel, unrouted)
        received.refused.extend(unrouted)
    return received


def _other_numbers(payload: Any, mine: str) -> dict[str, dict]:
    """Each phone number id other than `mine` with messages in a delivery, and a delivery of its changes only."""
    numbers: dict[str, dict] = {}
    entries = payload.get("entry") if isinstance(payload, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            metadata = value.get("metadata") if isinstance(value, dict) else None
            number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            if isinstance(number, str) and number and number != mine and value.get("messages"):
                delivery = numbers.setdefault(number, {"object": WHATSAPP_OBJECT, "entry": [{"changes": []}]})
                delivery["entry"][0]["changes"].append(change)
    return numbers


WHATSAPP_OBJECT = "whatsapp_business_account"  # the `object` of every WhatsApp Cloud API delivery
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
    kind = payload.get("object") if isinstance(payload, dict) else None
    if isinstance(payload, dict) and kind != WHATSAPP_OBJECT:  # an app's other products share its callback URL
        said = "no object" if kind is None else f"object {str(kind)[:40]!r}"
        return found, [Refusal(f"The delivery has {said}, not WhatsApp's ({WHATSAPP_OBJECT}).")]
    entries = payload.get("entry") if isinstance(payload, dict) else None
    if not isinstance(entries, list):  # Meta's deliveries always have one; a body without it is not one
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
        return Refusal(reason, usable_id[:MAX_MESSAGE_ID], usable_sender[:100], _excerpt(message))

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
        if not isinstance(message.get("type"), str) or not message.get("type"):
            return refuse("The message has no type, so what it holds cannot be read.")
        return refuse(f"The message's {message.get('type')!s:.40} part is not in Meta's shape (or is empty).")
    kind = message.get("type", "text")
    return Incoming(message_id, sender, text, "" if kind in TEXT_TYPES else str(kind)[:30])


def _excerpt(value: Any, limit: int = 2000) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = "[unreadable]"
    return payloads.printable(text[:limit])


# Messages a customer types or taps: the bot reads them. Anything else is shown to staff as what it is.
TEXT_TYPES = {"text", "interactive", "button"}


def _text_of(message: dict[str, Any]) -> str | None:
    """Text for the model whatever the type: the body, a button's title, a caption, or what was sent.

    None when the part that should carry the text has the wrong shape (a list where a string belongs).
    """
    kind = message.get("type")
    if not isinstance(kind, str) or not kind:
        return None
    part = message.get(kind, {})
    if not isinstance(part, dict):
        return None
    if kind == "text":
        body = part.get("body")
        return body if isinstance(body, str) and body.strip() else None
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
            call = _queue_answer(channel, message)
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
        else:
            if call is not None and call not in calls:  # a burst's messages share one call
                calls.append(call)
    if refused:
        _record_refusals(channel, refused)
    return Received(calls, refused)


def _queue_answer(channel: WhatsAppChannel, incoming: Incoming) -> Call | None:
    services.check_message(incoming.text.strip() or "[empty message]")
    with transaction.atomic():
        return message_answer(
            channel=channel,
            message_id=incoming.message_id,
            wa_id=incoming.wa_id,
            text=incoming.text,
            media_type=incoming.media_type,
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
