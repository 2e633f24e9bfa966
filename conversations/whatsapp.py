"""The WhatsApp Cloud API channel: verified webhooks in, conversations by wa_id, replies out via the Graph API.

Meta delivers webhooks at least once and expects a 200 within seconds, so the webhook only verifies, records
and queues; the model call and the send happen in workers. A message id seen before is acknowledged and
otherwise ignored.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

import requests
from django.db import IntegrityError, transaction

from connectors import crypto, http

from . import services
from .models import Call, Conversation, Message, WhatsAppChannel, WhatsAppSend

logger = logging.getLogger(__name__)
MAX_BODY = 4096  # characters in one WhatsApp text message
# Graph API error codes worth another try: throughput, pair rate limit, unknown/temporary.
TRANSIENT_CODES = {130429, 131056, 131000, 2, 4}


class SendFailed(Exception):
    """A send that may work later; the task retries it with backoff."""


@dataclass(frozen=True)
class Incoming:
    message_id: str
    wa_id: str
    text: str


class WebhookRefused(Exception):
    """A webhook body that is not Meta's: wrong signature (403) or not JSON (400)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def sign(channel: WhatsAppChannel, raw_body: bytes) -> str:
    """X-Hub-Signature-256: HMAC-SHA256 of the raw body (never re-serialised JSON) with the app secret."""
    return crypto.body_signature(crypto.decrypt(channel.app_secret_encrypted), raw_body)


def webhook_accept(*, channel: WhatsAppChannel, raw_body: bytes, signature: str) -> list[Call]:
    """Check the signature in constant time, then queue the new customer messages in the body."""
    if not hmac.compare_digest(sign(channel, raw_body).encode(), (signature or "").encode()):
        raise WebhookRefused(403, "X-Hub-Signature-256 does not match the app secret.")
    try:
        payload = json.loads(raw_body)
    except ValueError:
        raise WebhookRefused(400, "The body is not JSON.") from None
    return channel_receive(channel=channel, payload=payload)


def incoming_messages(payload: Any, phone_number_id: str | None = None) -> list[Incoming]:
    """Every customer message in a webhook body; status updates and malformed parts are skipped.

    Meta sends all of an app's numbers to one callback URL: with `phone_number_id`, only that number's.
    """
    found = []
    entries = payload.get("entry", []) if isinstance(payload, dict) else []
    for entry in entries if isinstance(entries, list) else []:
        for change in entry.get("changes", []) if isinstance(entry, dict) else []:
            value = change.get("value", {}) if isinstance(change, dict) else {}
            if not isinstance(value, dict):
                continue
            metadata = value.get("metadata")
            number = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
            if phone_number_id and number and number != phone_number_id:
                continue
            for message in value.get("messages", []):
                if isinstance(message, dict) and message.get("id") and message.get("from"):
                    found.append(Incoming(str(message["id"]), str(message["from"]), _text_of(message)))
    return found


def _text_of(message: dict[str, Any]) -> str:
    """Text for the model whatever the type: the body, a button's title, a caption, or what was sent."""
    kind = message.get("type", "unknown")
    part = message.get(kind) if isinstance(message.get(kind), dict) else {}
    if kind == "text":
        return str(part.get("body", ""))
    if kind == "interactive":
        reply = part.get("button_reply") or part.get("list_reply") or {}
        return str(reply.get("title", "[interactive reply]"))
    if kind == "button":
        return str(part.get("text", "[button]"))
    if kind == "location":
        return f"[location {part.get('latitude')}, {part.get('longitude')}] {part.get('name', '')}".strip()
    if kind == "reaction":
        return f"[reaction {part.get('emoji', '')}]"
    caption = part.get("caption")
    return f"[{kind}] {caption}" if caption else f"[{kind}]"


def channel_receive(*, channel: WhatsAppChannel, payload: Any) -> list[Call]:
    """Queue an answer for each new customer message; repeats of a message id are ignored."""
    calls = []
    for incoming in incoming_messages(payload, channel.phone_number_id):
        if Message.objects.filter(external_id=incoming.message_id).exists():
            continue
        text = incoming.text.strip() or "[empty message]"
        try:
            with transaction.atomic():
                conversation = (
                    Conversation.objects.filter(channel=channel, contact=incoming.wa_id).order_by("-updated_at").first()
                )
                if conversation is None:
                    call = services.call_send(
                        connection=channel.connection,
                        template=channel.template,
                        customer_message=text,
                        variables=channel.variables,
                        contact=incoming.wa_id,
                        channel=channel,
                        external_id=incoming.message_id,
                    )
                else:
                    call = services.conversation_reply(
                        conversation=conversation, customer_message=text, external_id=incoming.message_id
                    )
        except IntegrityError:  # the same message id arrived twice at once: the other delivery has it
            continue
        except (services.SendRefused, services.TemplateVariableError) as error:
            logger.warning("WhatsApp message %s from %s refused: %s", incoming.message_id, incoming.wa_id, error)
            continue
        calls.append(call)
    return calls


def reply_send(*, call_id: int, attempt: int) -> list[WhatsAppSend]:
    """Send a succeeded call's reply to the customer, in pieces of at most 4,096 characters."""
    call = Call.objects.select_related("conversation__channel", "message").get(pk=call_id)
    channel = call.conversation.channel
    if channel is None or call.status != Call.Status.SUCCEEDED:
        return []
    pieces = _pieces(call.reply_text)
    done = call.whatsapp_sends.filter(message_id__gt="").count()  # pieces delivered by earlier tries, in order
    url = f"{channel.graph_base_url.rstrip('/')}/{channel.graph_version}/{channel.phone_number_id}/messages"
    token = crypto.decrypt(channel.access_token_encrypted)
    sent = []
    for n, piece in enumerate(pieces[done:], start=done):
        body = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": call.conversation.contact,
            "type": "text",
            "text": {"preview_url": False, "body": piece},
        }
        if n == 0 and call.message.external_id:
            body["context"] = {"message_id": call.message.external_id}  # quote the customer's message
        record = WhatsAppSend(call=call, attempt=attempt)
        try:
            response = http.session().post(
                url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=(5, 15), allow_redirects=False
            )
            record.http_status = response.status_code
            data = _json(response)
            if response.ok:
                record.message_id = str(((data.get("messages") or [{}])[0]).get("id", ""))
            else:
                error = data.get("error", {}) if isinstance(data.get("error"), dict) else {}
                record.error_code = error.get("code") if isinstance(error.get("code"), int) else None
                record.error = str(error.get("message", response.text[:300]))
        except requests.RequestException as error:
            record.error = f"Could not reach the Graph API: {type(error).__name__}"
        record.save()
        sent.append(record)
        if not record.message_id:
            if record.error_code in TRANSIENT_CODES or record.http_status is None or record.http_status >= 500:
                raise SendFailed(record.error)
            break  # 131026 undeliverable, 131047 outside the 24 h window, 190 token: a retry will not help
    return sent


def _pieces(text: str) -> list[str]:
    return [text[i : i + MAX_BODY] for i in range(0, len(text), MAX_BODY)] or [""]


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
