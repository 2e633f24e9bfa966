"""The conversation log (templates, conversations, messages, calls) and the channels messages arrive through."""

from .channels import CallbackAttempt, IdempotencyKey, Integration, WhatsAppChannel, WhatsAppSend
from .log import Call, Conversation, Message, PromptTemplate

__all__ = [
    "Call",
    "CallbackAttempt",
    "Conversation",
    "IdempotencyKey",
    "Integration",
    "Message",
    "PromptTemplate",
    "WhatsAppChannel",
    "WhatsAppSend",
]
