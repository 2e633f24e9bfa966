"""The conversation log (templates, conversations, messages, calls) and the channels messages arrive through."""

from .channels import CallbackAttempt, IdempotencyKey, Integration, WhatsAppChannel, WhatsAppRefusal, WhatsAppSend
from .log import Call, Conversation, Message, PromptTemplate
from .outbound import Outbound
from .prompts import TemplateVersion, TestCase, TestResult, TestRun, TestSet
from .support import ConversationEvent, Feedback, WhatsAppContact

__all__ = [
    "Call",
    "CallbackAttempt",
    "Conversation",
    "ConversationEvent",
    "Feedback",
    "IdempotencyKey",
    "Integration",
    "Message",
    "Outbound",
    "PromptTemplate",
    "TemplateVersion",
    "TestCase",
    "TestResult",
    "TestRun",
    "TestSet",
    "WhatsAppChannel",
    "WhatsAppContact",
    "WhatsAppRefusal",
    "WhatsAppSend",
]
