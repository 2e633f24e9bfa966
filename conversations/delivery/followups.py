"""What follows an attempt that did not end the message: a retry on the same connection, a fallback hop to
the next one, and on WhatsApp a conversation handed to a person (the model asked for one, or every attempt
failed). `outcome.finish` calls these in the transaction that records the attempt."""

from __future__ import annotations

import logging
import random
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from connectors.errors import ErrorKind, ProviderError
from connectors.models import ProviderConnection

from .. import queue
from ..models import Call

logger = logging.getLogger(__name__)


def take_handover_marker(call: Call) -> bool:
    """Whether a WhatsApp reply hands the conversation over (it carries the channel's marker, which is
    taken out: the customer never reads it)."""
    channel = channel_of(call)
    marker = channel.handover_marker if channel else ""
    if not marker or marker not in call.reply_text:
        return False
    call.reply_text = call.reply_text.replace(marker, "").strip()
    return True


def hand_over(call: Call, *, handover: bool) -> None:
    from ..models import Conversation, ConversationEvent
    from ..support.services import conversation_hand_over

    channel = channel_of(call)
    if handover:  # the model asked for a person; its reply, if any, is the notice
        reason, event = Conversation.Reason.MODEL, ConversationEvent.Kind.MODEL_HANDED_OVER
        notice = "" if call.reply_text else channel.handover_text
    else:  # every attempt failed: the customer gets the apology instead of silence
        reason, event = Conversation.Reason.PROVIDER_FAILURE, ConversationEvent.Kind.PROVIDER_FAILED
        notice = channel.apology_text
    conversation_hand_over(
        conversation=call.conversation, reason=reason, event=event, note=call.error_summary, notice=notice
    )


def channel_of(call: Call):
    """The WhatsApp channel a call's conversation came in on (its settings), or None."""
    from ..models import WhatsAppChannel

    if call.conversation.channel_id is None:
        return None
    if not hasattr(call, "_channel"):
        call._channel = WhatsAppChannel.objects.get(pk=call.conversation.channel_id)
    return call._channel


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds before the next attempt: exponential backoff with full jitter, or Retry-After if longer.

    The same rule as Celery's retry_backoff/retry_jitter, in fractions of a second (Celery's helper works
    in whole seconds). Full jitter spreads the retries of many calls that failed together.
    """
    ceiling = min(settings.CALL_RETRY_BACKOFF_MAX_SECONDS, settings.CALL_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1))
    return max(random.uniform(0, ceiling), retry_after or 0.0)  # noqa: S311 - jitter, not cryptography


# Errors the message itself causes: another provider would refuse it too, so no fallback is tried.
MESSAGE_ERRORS = frozenset({ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_TOO_LONG, ErrorKind.INTERNAL})


def fallback_for(call: Call, error: ProviderError) -> ProviderConnection | None:
    """The connection that gets the message next when this call failed for good: its connection's fallback,
    unless the message caused the error or that connection already had its turn at this message."""
    if error.kind in MESSAGE_ERRORS or not call.connection.fallback_id:
        return None
    tried = set(Call.objects.filter(message_id=call.message_id).values_list("connection_id", flat=True))
    fallback = call.connection.fallback
    return None if fallback.pk in tried else fallback


def schedule_fallback(call: Call, fallback: ProviderConnection, error: ProviderError) -> Call:
    """The next hop: a new attempt row on the fallback connection, linked to the call that failed."""
    hop = Call.objects.create(
        conversation_id=call.conversation_id,
        message_id=call.message_id,
        connection=fallback,
        model=fallback.model,
        attempt=call.attempt + 1,
        connection_attempt=1,
        fallback_from=call,
    )
    queue.publish_on_commit(queue.EXECUTE_CALL, hop.pk)
    logger.info(
        "call %s failed on %s (%s); falling back to %s as call %s",
        call.pk,
        call.connection,
        error.kind,
        fallback,
        hop.pk,
    )
    return hop


def schedule_retry(call: Call, error: ProviderError) -> Call:
    delay = retry_delay(call.connection_attempt, error.retry_after)
    retry = Call.objects.create(
        conversation_id=call.conversation_id,
        message_id=call.message_id,
        connection_id=call.connection_id,
        model=call.model,
        attempt=call.attempt + 1,
        connection_attempt=call.connection_attempt + 1,
        fallback_from_id=call.fallback_from_id,  # still answering for the connection it fell back from
        run_after=timezone.now() + timedelta(seconds=delay),
    )
    queue.publish_on_commit(queue.EXECUTE_CALL, retry.pk, countdown=delay)
    logger.info("call %s: %s; attempt %s in %.1f s as call %s", call.pk, error.kind, retry.attempt, delay, retry.pk)
    return retry
