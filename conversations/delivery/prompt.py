"""What the provider is sent for a call: the conversation's recent turns that fit, after the system prompt
of the template version published now."""

from __future__ import annotations

import logging

from django.conf import settings

from .. import store
from ..models import Call
from ..rendering import TemplateVariableError

logger = logging.getLogger(__name__)


def call_messages(call: Call, history: list[tuple[str, str]], system: str) -> list[dict[str, str]]:
    """The chat history up to the customer message this call answers, as the provider expects it.

    `history` is the conversation's newest messages first, as `store.call_claim` read them. Only those that
    fit CONVERSATION_HISTORY_TOKENS (counted roughly, four characters a token) are sent, like a chatbot's
    memory; the current message always is.
    """
    budget = settings.CONVERSATION_HISTORY_TOKENS
    kept = []
    for role, content in history:
        budget -= len(content) // 4 + 1
        if kept and budget < 0:
            break
        # What the team wrote, and Switchboard's own notices, were answers from the business: the model
        # reads them as the assistant's turns, so it picks up where a person left off.
        kept.append({"role": "user" if role == "user" else "assistant", "content": content})
    return ([{"role": "system", "content": system}] if system else []) + kept[::-1]


def system_prompt_for(call: Call, prompt: store.Prompt) -> str:
    """The system prompt of the template version published now (or the version a test run pinned), with the
    conversation's variables, so a publish or a rollback reaches an ongoing conversation at its next message.
    Records that version on the call. `prompt` is that text as the claim read it (no query here); a
    conversation whose variables the new version cannot fill keeps the prompt it started with."""
    conversation = call.conversation
    call.template_version_id = prompt.version_id
    try:
        system, _ = prompt.render_lenient(variables=conversation.variables)
    except TemplateVariableError:
        logger.warning("call %s: template version lacks a value; sending the conversation's first prompt", call.pk)
        return conversation.system_prompt
    return system
