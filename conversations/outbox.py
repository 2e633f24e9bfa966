"""The outbox: every message Switchboard sends out, delivered at least once and recorded, whatever restarts.

Guarantees, and how they are kept:
- Nothing the database accepted depends on a broker message alone. An Outbound row is written in the same
  transaction as what it reports (a call's final outcome), then a task is published with its id. A lost
  message (Redis restarted, a worker killed) leaves the row queued or running, and the sweeper queues it
  again, as it does calls.
- A row is claimed like a call (`status` queued → running, with `started_at` as a fencing token): a
  duplicate message does nothing, and a worker that comes back after the sweeper handed its row on
  records nothing.
- What was sent stays on record even when the database blinks meanwhile: the try's row (CallbackAttempt,
  WhatsAppSend) and the outcome are written with `durably`, which waits for the database to come back
  (OUTBOX_RECORD_PATIENCE_SECONDS) instead of losing the record and sending again.
- Only what a retry can fix is retried (network, timeouts, 429, 5xx, Meta's throughput codes), with
  exponential backoff and full jitter; each try is a row. A WhatsApp reply in several parts resumes after
  the last part Meta accepted.
- Delivery is at least once: a worker killed between the send and its record sends again after the
  sweeper's grace. Callbacks carry `X-Switchboard-Delivery` (the row's id) for receivers to drop repeats.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from config.errors import service_unavailable

from . import queue
from .callbacks import callback_try
from .models import Call, Outbound
from .tries import TryResult, durably
from .whatsapp import read_try, whatsapp_try
from .whatsapp.formatting import whatsapp_text

logger = logging.getLogger(__name__)


def outbound_kinds(call: Call, *, has_callback: bool) -> list[str]:
    """What a call's final outcome sends out: its outcome to the integration's callback URL (the claim
    read whether it has one), and a succeeded reply to the WhatsApp customer."""
    kinds = []
    conversation = call.conversation
    if conversation.integration_id and has_callback:
        kinds.append(Outbound.Kind.CALLBACK)
    if conversation.channel_id and call.status == Call.Status.SUCCEEDED and call.reply_text:
        kinds.append(Outbound.Kind.WHATSAPP)
    return kinds


def outbound_create(*, call: Call, kinds: list[str]) -> list[Outbound]:
    """The rows for a call's outcome, inside the caller's transaction; each is sent once that commits."""
    rows = [
        Outbound(
            kind=kind,
            conversation_id=call.conversation_id,
            call=call,
            # What the customer reads: the model's Markdown in WhatsApp's marks.
            text=whatsapp_text(call.reply_text) if kind == Outbound.Kind.WHATSAPP else "",
        )
        for kind in kinds
    ]
    for row in rows:
        row.save()
        queue.publish_on_commit(queue.DELIVER_OUTBOUND, row.pk)
    return rows


def outbound_deliver(*, outbound_id: int) -> Outbound | None:
    """Claim a queued row, make one try, record it; None when the row is not queued (a duplicate message)."""
    token = timezone.now()
    if not Outbound.objects.filter(pk=outbound_id, status=Outbound.Status.QUEUED).update(
        status=Outbound.Status.RUNNING, started_at=token, tries=F("tries") + 1
    ):
        logger.info("outbound %s is not queued any more; skipping a duplicate delivery", outbound_id)
        return None
    row = Outbound.objects.select_related(
        "conversation__integration", "conversation__channel", "call__message", "call__conversation", "message__sent_by"
    ).get(pk=outbound_id)
    try:
        result = _SENDERS[row.kind](row)
    except Exception as error:
        if service_unavailable(error):
            raise  # the sweeper hands the row on once the database is back
        logger.exception("outbound %s failed inside Switchboard", outbound_id)
        result = TryResult(False, f"Switchboard could not send this ({type(error).__name__}); the error is logged.")
    durably(lambda: _record(row, result))
    return row


def _record(row: Outbound, result: TryResult) -> None:
    """The try's outcome, if this worker still holds the row: sent, failed, or queued for the next try."""
    now = timezone.now()
    held = Outbound.objects.filter(pk=row.pk, status=Outbound.Status.RUNNING, started_at=row.started_at)
    if result.sent:
        done = held.update(status=Outbound.Status.SENT, finished_at=now, last_error="")
        row.status = Outbound.Status.SENT
    elif result.transient and row.tries < settings.OUTBOX_MAX_TRIES:
        delay = retry_delay(row.tries, result.retry_after)
        with transaction.atomic():
            done = held.update(
                status=Outbound.Status.QUEUED,
                started_at=None,
                run_after=now + timedelta(seconds=delay),
                last_error=result.error[:2000],
            )
            if done:
                queue.publish_on_commit(queue.DELIVER_OUTBOUND, row.pk, countdown=delay)
        row.status = Outbound.Status.QUEUED
        logger.info("outbound %s try %s: %s; next try in %.1f s", row.pk, row.tries, result.error, delay)
    else:
        done = held.update(status=Outbound.Status.FAILED, finished_at=now, last_error=result.error[:2000])
        row.status = Outbound.Status.FAILED
        logger.warning("outbound %s failed for good after %s tries: %s", row.pk, row.tries, result.error)
    if not done:
        logger.warning("outbound %s was handed to another worker meanwhile; dropping this outcome", row.pk)


def retry_delay(tries: int, retry_after: float | None) -> float:
    """Exponential backoff from OUTBOX_RETRY_BACKOFF_SECONDS, each wait between half its ceiling and all of it,
    or Retry-After if longer.

    Half the ceiling at least ("equal jitter"), not anything from zero: with full jitter an unlucky row used
    its seven tries in 14 s, and a receiver down for a minute lost its callback. The tries then span a known
    time, and the random half still spreads rows that failed together."""
    ceiling = min(settings.OUTBOX_RETRY_BACKOFF_MAX_SECONDS, settings.OUTBOX_RETRY_BACKOFF_SECONDS * 2 ** (tries - 1))
    return max(random.uniform(ceiling / 2, ceiling), retry_after or 0.0)  # noqa: S311 - jitter, not cryptography


_SENDERS: dict[str, Callable[[Outbound], TryResult]] = {
    Outbound.Kind.CALLBACK: callback_try,
    Outbound.Kind.WHATSAPP: whatsapp_try,
    Outbound.Kind.READ: read_try,
}


def running_timeout(row_kind: str, text_length: int) -> float:
    """How long a try can take before the sweeper may decide its worker died: every part's deadline."""
    if row_kind == Outbound.Kind.WHATSAPP:
        return 20.0 * max(1, -(-text_length // 4096))
    return 15.0
