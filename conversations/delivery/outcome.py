"""Recording an attempt's outcome: one statement fenced on the worker's token, and in its transaction what
follows from it (a retry, a fallback hop, the outbox, a handover); then the waiting API request woken."""

from __future__ import annotations

import enum
import logging
from contextlib import nullcontext

from django.db import transaction

from connectors import chat_completions
from connectors.errors import ProviderError

from .. import outbox, store, wakeup
from ..models import Call
from ..tries import durably
from . import followups

logger = logging.getLogger(__name__)


# What a finished attempt writes; everything else on the row was set when it was queued or claimed.
OUTCOME_FIELDS = [
    "status",
    "model",
    "request",
    "http_status",
    "response_body",
    "reply",
    "reply_text",
    "finish_reason",
    "provider_request_id",
    "error_kind",
    "error_message",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "finished_at",
    "template_version",
    "worker",  # set by the claim, or here for a call the web claimed as it queued it (store.preclaimed)
]


def finish(
    call: Call,
    has_callback: bool,
    *,
    reply: chat_completions.ChatReply | None = None,
    error: ProviderError | None = None,
    handover: bool = False,
) -> Recorded:
    """Store the outcome if this worker still holds the call; schedule the next attempt if one can help, or
    put what the outcome sends out (a callback, a WhatsApp reply) in the outbox. On WhatsApp, a reply that
    hands over, or a failure for good, leaves the conversation waiting for a person (the customer gets the
    channel's notice or apology instead of silence).

    A database that blinks meanwhile is waited for (`tries.durably`): the provider's answer is in hand,
    and losing it would mean asking again.
    """
    retry = (
        error is not None
        and not error.permanent
        and not error.skipped
        and call.connection_attempt < call.connection.max_attempts
    )
    reply_text = call.reply_text if reply is not None and call.reply_text else None

    def record() -> Recorded:
        # Read here, where a database that blinks is waited for: the provider's answer is already in hand.
        fallback = None if retry or error is None else followups.fallback_for(call, error)
        gave_up = error is not None and not retry and fallback is None and call.conversation.channel_id is not None
        outgoing = [] if retry or fallback else outbox.outbound_kinds(call, has_callback=has_callback)
        # The outcome is one statement on PostgreSQL; a retry's next row, a fallback's, the outbox rows
        # or a handover share its transaction, so that a worker dying in between cannot leave an outcome
        # without what follows from it.
        with transaction.atomic() if retry or fallback or outgoing or handover or gave_up else nullcontext():
            if not store.call_record(call=call, fields=OUTCOME_FIELDS, reply_text=reply_text):
                logger.warning("call %s was handed to another worker meanwhile; dropping this outcome", call.pk)
                return Recorded.NOTHING
            if retry:
                followups.schedule_retry(call, error)
            elif fallback:
                followups.schedule_fallback(call, fallback, error)
            elif outgoing:
                outbox.outbound_create(call=call, kinds=outgoing)
            if handover or gave_up:
                followups.hand_over(call, handover=handover)
        return Recorded.FOLLOWED if retry or fallback else Recorded.FINAL

    return durably(record)


class Recorded(enum.Enum):
    """What `finish` did with an outcome."""

    NOTHING = "nothing"  # the sweeper handed the call to another worker meanwhile: nothing written
    FINAL = "final"  # the message's last attempt: answered, or failed for good
    FOLLOWED = "followed"  # recorded, and a retry or a fallback hop is queued after it

    def __bool__(self) -> bool:
        return self is not Recorded.NOTHING


def ring(call: Call, recorded: Recorded) -> None:
    """Wake an API request waiting for this message (only API conversations have one); a final outcome
    travels with the ring, so the waiter answers without reading the row back."""
    if recorded and call.conversation.integration_id:
        wakeup.ring(call.message_id, call if recorded is Recorded.FINAL else None)
