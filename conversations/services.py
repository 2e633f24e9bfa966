"""What the test console, the commands and the worker do with conversations and calls.

`call_send` records everything the worker needs (conversation, customer message, a queued call row) and
queues the call once that is committed; `delivery.call_execute` is the worker's side. The database is the
record; the broker only carries ids.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectors.models import ProviderConnection
from connectors.providers import adapter_for

from . import store
from .models import Call, Conversation, Message, PromptTemplate
from .rendering import TemplateVariableError

logger = logging.getLogger(__name__)


# What a conversation may set instead of its connection.
OVERRIDABLE = ("model", "temperature", "max_tokens")


def request_settings(connection: ProviderConnection, overrides: dict[str, object]) -> dict[str, object]:
    """model, max_tokens and temperature for a request: the conversation's overrides, else the connection's."""
    return {
        "model": overrides.get("model") or connection.model,
        "max_tokens": overrides.get("max_tokens", connection.max_tokens),
        "temperature": overrides.get("temperature", connection.temperature),
    }


def clean_overrides(overrides: dict[str, object] | None) -> dict[str, object]:
    """Only the settings a conversation may override, and only those actually set."""
    return {k: v for k, v in (overrides or {}).items() if k in OVERRIDABLE and v not in (None, "")}


class SendRefused(ValueError):
    """The send was refused before anything was recorded; the message says what to change."""


def conversation_start(
    *,
    connection: ProviderConnection,
    template: PromptTemplate,
    variables: dict[str, str] | None = None,
    contact: str = "test console",
    overrides: dict[str, object] | None = None,
    integration=None,
    channel=None,
    version=None,
) -> Conversation:
    """A new conversation with its system prompt rendered (a missing variable is TemplateVariableError).
    `version` pins one version of the template (a test run's); otherwise each call uses the published one."""
    variables = dict(variables or {})
    system_prompt = (version or template).render_system(variables=variables)
    overrides = clean_overrides(overrides)
    problem = adapter_for(connection).temperature_problem(overrides.get("temperature"))
    if problem:
        raise SendRefused(problem)
    return Conversation.objects.create(
        contact=contact,
        connection=connection,
        template=template,
        variables=variables,
        system_prompt=system_prompt,
        overrides=overrides,
        integration=integration,
        channel=channel,
        template_version=version,
    )


def call_send(
    *,
    connection: ProviderConnection,
    template: PromptTemplate,
    customer_message: str,
    variables: dict[str, str] | None = None,
    contact: str = "test console",
    overrides: dict[str, object] | None = None,
    integration=None,
    channel=None,
    external_id: str | None = None,
    version=None,
) -> Call:
    """Start a new conversation with the customer's message and queue the call that answers it.

    `overrides` may set model, temperature and max_tokens for this conversation instead of the connection's.
    `external_id` is the channel's own id for the message (WhatsApp's wamid), unique where set.
    """
    check_message(customer_message)
    with transaction.atomic():
        conversation = conversation_start(
            connection=connection,
            template=template,
            variables=variables,
            contact=contact,
            overrides=overrides,
            integration=integration,
            channel=channel,
            version=version,
        )
        return call_queue(conversation=conversation, message=message_new(conversation, customer_message, external_id))


def conversation_reply(*, conversation: Conversation, customer_message: str, external_id: str | None = None) -> Call:
    """Add the customer's next message to a conversation and queue the call that answers it."""
    check_message(customer_message)
    # Inside a caller's transaction (the API's), no savepoint of its own: two round trips for nothing, since a
    # failure here fails the caller's transaction anyway.
    with transaction.atomic(savepoint=False):
        return call_queue(conversation=conversation, message=message_new(conversation, customer_message, external_id))


def message_add(
    conversation: Conversation, customer_message: str, external_id: str | None = None, media_type: str = ""
) -> Message:
    """The customer's message, saved."""
    message = message_new(conversation, customer_message, external_id, media_type)
    message.save(force_insert=True)
    return message


def message_new(
    conversation: Conversation, customer_message: str, external_id: str | None = None, media_type: str = ""
) -> Message:
    """The customer's message, as the provider will get it (through the conversation's template), not saved yet:
    `call_queue` saves it with its call."""
    if conversation.template is None:  # arrived as chat messages: the text is sent as it is
        user_text = customer_message
    else:
        # The version published now (or the one a test run pinned); values an older version used are left out.
        text = conversation.template_version or conversation.template
        _, user_text = text.render_lenient(variables=conversation.variables, customer_message=customer_message)
    return Message(
        conversation=conversation,
        role=Message.Role.USER,
        content=user_text,
        customer_message=customer_message,
        external_id=external_id,
        media_type=media_type,
    )


def check_message(customer_message: str) -> None:
    if not customer_message.strip():
        raise SendRefused("The customer message is empty. Type the message the customer would send.")
    try:
        size = len(customer_message.encode())
    except UnicodeEncodeError as error:
        raise SendRefused(
            f"The customer message has bytes that are not UTF-8 text (at character {error.start + 1}). "
            "Send the message as UTF-8."
        ) from None
    if "\x00" in customer_message:
        raise SendRefused("The customer message contains a NUL character. Remove it and send again.")
    limit = settings.MAX_CUSTOMER_MESSAGE_BYTES
    if size > limit:
        raise SendRefused(
            f"The customer message is {size:,} bytes; the limit is {limit:,} (MAX_CUSTOMER_MESSAGE_BYTES). "
            "Shorten the message or raise the limit."
        )


def call_queue(*, conversation: Conversation, message: Message, delay: float = 0.0, attempt: int = 1) -> Call:
    """A queued call answering `message`, rung once this commits (after `delay` seconds: a burst's window).
    `attempt` is 1 for a new message; more when a message whose attempts failed is answered again."""
    call = Call(
        attempt=attempt,
        connection=conversation.connection,
        model=request_settings(conversation.connection, conversation.overrides)["model"],
        run_after=timezone.now() + timedelta(seconds=delay),
    )
    return store.call_accept(conversation, message, call, countdown=delay or None)


__all__ = ["SendRefused", "TemplateVariableError", "call_send", "conversation_reply"]
