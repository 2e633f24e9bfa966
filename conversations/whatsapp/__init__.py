"""The WhatsApp Cloud API channel: Meta's webhook in (webhook.py), replies out through the Graph API (send.py),
the pages staff use (views.py)."""

from .formatting import MAX_MESSAGE, whatsapp_parts, whatsapp_text
from .send import TRANSIENT_CODES, read_try, whatsapp_try
from .webhook import (
    Incoming,
    Received,
    Refusal,
    WebhookRefused,
    channel_receive,
    incoming_messages,
    read_delivery,
    sign,
    webhook_accept,
)

__all__ = [
    "MAX_MESSAGE",
    "TRANSIENT_CODES",
    "Incoming",
    "Received",
    "Refusal",
    "WebhookRefused",
    "channel_receive",
    "incoming_messages",
    "read_delivery",
    "read_try",
    "sign",
    "webhook_accept",
    "whatsapp_parts",
    "whatsapp_text",
    "whatsapp_try",
]
