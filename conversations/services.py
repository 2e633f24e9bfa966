"""What the test console, the commands and the worker do with conversations and calls.

`call_send` records everything the worker needs (conversation, customer message, a queued call row) and
queues the call once that is committed. `call_execute` is the worker's side: it claims the row, sends the
request and records the outcome. The database is the record; the broker only carries ids.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from connectors import chat_completions
from connectors.crypto import SecretUnreadable
from connectors.errors import ErrorKind, ProviderError
from connectors.models import ProviderConnection

from .models import Call, Conversation, Message, PromptTemplate
from .rendering import TemplateVariableError

logger = logging.getLogger(__name__)


class SendRefused(ValueError):
    """The send was refused before anything was recorded; the message says what to change."""


def call_send(
    *,
    connection: ProviderConnection,
    template: PromptTemplate,
    customer_message: str,
    variables: dict[str, str] | None = None,
    contact: str = "test console",
) -> Call:
    """Start a new conversation with the customer's message and queue the call that answers it."""
    _check_message(customer_message)
    variables = dict(variables or {})
    system_prompt, user_text = template.render(variables=variables, customer_message=customer_message)
    with transaction.atomic():
        conversation = Conversation.objects.create(
            contact=contact, connection=connection, template=template, variables=variables, system_prompt=system_prompt
        )
        return _queue(conversation, user_text)


def conversation_reply(*, conversation: Conversation, customer_message: str) -> Call:
    """Add the customer's next message to a conversation and queue the call that answers it."""
    _check_message(customer_message)
    _, user_text = conversation.template.render(variables=conversation.variables, customer_message=customer_message)
    with transaction.atomic():
        return _queue(conversation, user_text)


def _check_message(customer_message: str) -> None:
    if not customer_message.strip():
        raise SendRefused("The customer message is empty. Type the message the customer would send.")
    size = len(customer_message.encode())
    limit = settings.MAX_CUSTOMER_MESSAGE_BYTES
    if size > limit:
        raise SendRefused(
            f"The customer message is {size:,} bytes; the limit is {limit:,} (MAX_CUSTOMER_MESSAGE_BYTES). "
            "Shorten the message or raise the limit."
        )


def _queue(conversation: Conversation, user_text: str) -> Call:
    from .tasks import execute_call  # the task module imports this one

    message = Message.objects.create(conversation=conversation, role=Message.Role.USER, content=user_text)
    call = Call.objects.create(
        conversation=conversation,
        message=message,
        connection=conversation.connection,
        model=conversation.connection.model,
    )
    conversation.save(update_fields=["updated_at"])
    transaction.on_commit(lambda: execute_call.delay(call.pk))
    return call


def call_messages(call: Call) -> list[dict[str, str]]:
    """The chat history up to the customer message this call answers, as the provider expects it."""
    history = call.conversation.messages.filter(id__lte=call.message_id).order_by("created_at", "id")
    messages = (
        [{"role": "system", "content": call.conversation.system_prompt}] if call.conversation.system_prompt else []
    )
    messages += [{"role": m.role, "content": m.content} for m in history]
    return messages


def call_execute(*, call_id: int) -> Call | None:
    """Make the provider request for a queued call and record the outcome.

    Returns None when the call is not queued any more: another delivery of the same task got there first.
    """
    claimed = Call.objects.filter(pk=call_id, status=Call.Status.QUEUED).update(
        status=Call.Status.RUNNING, started_at=timezone.now()
    )
    if not claimed:
        logger.info("call %s is not queued any more; skipping a duplicate delivery", call_id)
        return None
    call = Call.objects.select_related("connection", "conversation").get(pk=call_id)
    connection = call.connection
    call.model = connection.model
    call.request = chat_completions.build_body(
        model=connection.model,
        messages=call_messages(call),
        max_tokens=connection.max_tokens,
        temperature=connection.temperature,
    )
    started = time.monotonic()
    try:
        api_key = _usable_key(connection)
        reply = chat_completions.chat(
            base_url=connection.base_url, api_key=api_key, body=call.request, timeout=connection.timeout_seconds
        )
    except ProviderError as error:
        call.latency_ms = _elapsed_ms(started)
        _record_failure(call, error)
    else:
        call.latency_ms = _elapsed_ms(started)
        _record_success(call, reply)
    logger.info(
        "call %s %s in %s ms%s",
        call.pk,
        call.status,
        call.latency_ms,
        f" ({call.error_kind}: {call.error_message})" if call.error_kind else "",
    )
    return call


def _usable_key(connection: ProviderConnection) -> str:
    if not connection.model:
        raise ProviderError(
            ErrorKind.MISSING_MODEL, f"Connection {connection.name!r} has no model, so nothing was sent."
        )
    try:
        api_key = connection.api_key
    except SecretUnreadable as error:
        raise ProviderError(ErrorKind.CONFIG, str(error)) from None
    if not api_key:
        raise ProviderError(ErrorKind.CONFIG, f"Connection {connection.name!r} has no API key, so nothing was sent.")
    return api_key


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _record_success(call: Call, reply: chat_completions.ChatReply) -> None:
    call.status = Call.Status.SUCCEEDED
    call.http_status = reply.status
    call.response_body = reply.body
    call.reply_text = reply.content
    call.finish_reason = reply.finish_reason
    call.provider_request_id = reply.response_id
    call.prompt_tokens = reply.prompt_tokens
    call.completion_tokens = reply.completion_tokens
    call.finished_at = timezone.now()
    with transaction.atomic():
        call.reply = Message.objects.create(
            conversation_id=call.conversation_id, role=Message.Role.ASSISTANT, content=reply.content
        )
        call.save()
        Conversation.objects.filter(pk=call.conversation_id).update(updated_at=call.finished_at)


def _record_failure(call: Call, error: ProviderError) -> None:
    call.status = Call.Status.FAILED
    call.http_status = error.status
    call.response_body = error.body
    call.error_kind = error.kind
    call.error_message = error.message
    call.finished_at = timezone.now()
    call.save()


__all__ = ["SendRefused", "TemplateVariableError", "call_execute", "call_send", "conversation_reply"]
