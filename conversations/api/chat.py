"""A chat-completions request (`POST /api/v1/chat/completions`) as a conversation: its system messages, its
earlier turns and the customer's message, queued for the worker like any other call.

Everything is checked before anything is written, so a refused request leaves nothing half-created.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError

from config.names import validate_name
from connectors.models import ProviderConnection
from connectors.providers import adapter_for

from .. import services, store
from ..inbound import Refused, allowed_connection, checked_contact, checked_text
from ..models import Call, Conversation, Integration, Message

MODEL_MAX = 200  # as Call.model holds
# Turns one request may hold, as OpenAI's own API allows: every turn is stored as a message row, and the
# provider is sent only the newest (CONVERSATION_HISTORY_MESSAGES), so a longer list only fills the database.
MESSAGES_MAX = 2048
MAX_TOKENS_MAX = 1_000_000  # as a connection's own max tokens allows
# OpenAI's newer name for the instructions ("developer") is a system message to every provider Switchboard relays to.
SYSTEM_ROLES = ("system", "developer")


def _content(value: Any, field: str) -> str:
    """A chat message's text: a string, or OpenAI's list of parts [{"type": "text", "text": "…"}] joined."""
    if isinstance(value, list) and value:
        texts = []
        for n, part in enumerate(value):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise Refused(
                    400,
                    f"{field}[{n}]",
                    'Only text parts can be relayed: {"type": "text", "text": "…"}. Images, audio and files are not '
                    "supported; send what they say as text.",
                )
            texts.append(part["text"])
        value = "\n".join(texts)
    if not isinstance(value, str):
        raise Refused(400, field, f'"{field}" is the message\'s text: a string, or a list of text parts.')
    return checked_text(value, field)


def _connection_for_model(integration: Integration, model: str | None) -> tuple[ProviderConnection, str | None]:
    """What a chat request's `model` names: one of the integration's connections (by name), or else a model for
    its default connection. One query at most: the connection of that name, if any, and whether this
    integration may use it."""
    named, allowed = store.connection_named(model, integration) if model else (None, False)
    if allowed:
        return named, None
    if named is not None:
        # A connection by name, but not one of this integration's: never send its name to another provider.
        # 404, as OpenAI answers a model the key may not use: a 403 would read as a token problem.
        names = ", ".join(integration.connections.order_by("name").values_list("name", flat=True)) or "none yet"
        raise Refused(
            404,
            "model",
            f"{model!r} is a connection this integration may not use. Allowed: {names}. An Admin can allow it on "
            "the integration's page.",
            "model_not_found",
        )
    return allowed_connection(integration, None), model or None


def chat_receive(
    *, integration: Integration, payload: dict[str, Any], contact: str, contact_field: str = "user"
) -> Call:
    """Queue a chat-completions request as a conversation: its system and earlier turns, then the last user message."""
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise Refused(400, "messages", '"messages" must be a list of {"role", "content"} objects.')
    if len(messages) > MESSAGES_MAX:
        raise Refused(
            400,
            "messages",
            f'"messages" has {len(messages):,} entries; at most {MESSAGES_MAX:,} are taken (as at OpenAI). Send the '
            "system messages and the recent turns: the provider reads only the newest "
            f"{settings.CONVERSATION_HISTORY_MESSAGES} anyway.",
        )
    for n, m in enumerate(messages):
        if m.get("role") not in (*SYSTEM_ROLES, "user", "assistant"):
            raise Refused(
                400, f"messages[{n}].role", "Each message's role is system (or developer), user or assistant."
            )
        messages[n] = {**m, "content": _content(m.get("content"), f"messages[{n}].content")}
    turns = [m for m in messages if m["role"] not in SYSTEM_ROLES]
    if not turns or turns[-1]["role"] != "user":
        raise Refused(400, "messages", 'The last message must be the customer\'s: {"role": "user", "content": "…"}.')
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise Refused(400, "model", '"model" is text: a connection name, or a model for the default connection.')
    if model is not None and not model.strip():
        # Taken as no model, an empty one (a tool's setting left blank) would answer from a model nobody chose.
        raise Refused(
            400,
            "model",
            '"model" is empty: name a connection or a model (GET /api/v1/models lists them), or leave it out for '
            "the default connection's model.",
        )
    if model is not None and len(model) > MODEL_MAX:
        raise Refused(
            400, "model", f'"model" is {len(model):,} characters; a model or connection name is at most {MODEL_MAX}.'
        )
    if model is not None:
        try:
            validate_name(model)
        except ValidationError as error:
            raise Refused(400, "model", f'"model": {error.messages[0]}') from None
    connection, named_model = _connection_for_model(integration, model)
    overrides = {"model": named_model}
    temperature, max_tokens = payload.get("temperature"), payload.get("max_tokens")
    tokens_field = "max_tokens"
    if payload.get("max_completion_tokens") is not None:  # OpenAI's newer name for it
        if max_tokens is not None and max_tokens != payload["max_completion_tokens"]:
            raise Refused(
                400, "max_completion_tokens", "max_tokens and max_completion_tokens differ: send one of them."
            )
        max_tokens, tokens_field = payload["max_completion_tokens"], "max_completion_tokens"
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            raise Refused(400, "temperature", '"temperature" is a number from 0 to 2.')
        overrides["temperature"] = temperature
        problem = adapter_for(connection).temperature_problem(temperature)
        if problem:
            raise Refused(400, "temperature", problem)
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_TOKENS_MAX:
            raise Refused(400, tokens_field, f'"{tokens_field}" is a whole number from 1 to {MAX_TOKENS_MAX:,}.')
        overrides["max_tokens"] = max_tokens
    system = "\n\n".join(m["content"] for m in messages if m["role"] in SYSTEM_ROLES)
    customer_message = turns[-1]["content"]
    services.check_message(customer_message)
    contact = checked_contact(checked_text(contact, contact_field, 200), contact_field)
    conversation = Conversation(
        contact=contact,
        connection=connection,
        template=None,
        integration=integration,
        system_prompt=system,
        overrides=services.clean_overrides(overrides),
    )
    messages = [Message(role=m["role"], content=m["content"]) for m in turns[:-1]]
    messages.append(Message(role=Message.Role.USER, content=customer_message, customer_message=customer_message))
    model = services.request_settings(connection, conversation.overrides)["model"]
    return store.chat_accept(conversation, messages, Call(connection=connection, model=model))
