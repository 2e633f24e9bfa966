"""The safety net under the broker: rows the database accepted but no worker is going to finish.

Calls and outbound messages are swept alike. A row running past its own deadline, plus the time its
worker may spend waiting for the database to record what it did (OUTBOX_RECORD_PATIENCE_SECONDS), plus a
grace (CALL_RUNNING_GRACE_SECONDS), lost its worker. An outbound message is queued again, or failed for good
once it has had all its tries (a message whose every try kills its worker must not loop). A call may have
reached the provider, which may have answered and billed it: its row is closed as a failure that says so,
and the message goes out again as a new attempt, so that the log shows both sends.

A row queued well past its time lost its broker message: it is published again, after
CALL_QUEUED_STALE_SECONDS once the broker's queue is empty (while it still holds messages, an overdue row
is most likely part of a backlog being worked through), or after CALL_QUEUED_LOST_SECONDS even through a
busy queue (a worker killed outright takes the messages it held with it, and a busy queue might never be
empty). Each row is queued again at most once per period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from connectors.errors import ErrorKind

from . import doorbell, outbox, queue
from .models import Call, Outbound

logger = logging.getLogger(__name__)


def calls_sweep() -> list[int]:
    """Queue again the calls whose broker message was lost or whose worker died. Returns their ids."""
    left = _claimed_left_behind()
    stuck = Call.objects.filter(status=Call.Status.RUNNING).values_list(
        "pk", "started_at", "connection__timeout_seconds"
    )
    return left + _sweep(Call, queue.EXECUTE_CALL, stuck, lambda timeout: timeout, _call_sent_again)


def _call_sent_again(pk: int, started_at: datetime, now: datetime) -> int | None:
    """Close a call whose worker was lost as a failure that says what may have happened, and queue the
    message's next attempt (same connection, same try of it); its id, or None if the call is not as seen."""
    with transaction.atomic():
        lost = Call.objects.select_for_update().filter(pk=pk, status=Call.Status.RUNNING, started_at=started_at).first()
        if lost is None:
            return None
        again = Call.objects.create(
            conversation_id=lost.conversation_id,
            message_id=lost.message_id,
            connection_id=lost.connection_id,
            model=lost.model,
            attempt=Call.objects.filter(message_id=lost.message_id).aggregate(n=Max("attempt"))["n"] + 1,
            connection_attempt=lost.connection_attempt,  # a lost worker is not the provider's failure
            fallback_from_id=lost.fallback_from_id,
            run_after=now,
        )
        lost.status, lost.finished_at, lost.error_kind = Call.Status.FAILED, now, ErrorKind.INTERNAL
        lost.error_message = (
            f"The worker running this attempt (since {timezone.localtime(started_at):%H:%M:%S}) stopped before "
            "recording it: killed, restarted, or cut off from the database. The request may have reached the "
            f"provider, which may have answered and billed it. The message was sent again as call {again.pk}."
        )
        lost.save(update_fields=["status", "finished_at", "error_kind", "error_message"])
    return again.pk


def _outbound_queued_again(pk: int, started_at: datetime, now: datetime) -> int | None:
    """Queue again an outbound message whose worker was lost; its id, or None if it is not as seen."""
    taken = Outbound.objects.filter(pk=pk, status=Outbound.Status.RUNNING, started_at=started_at).update(
        status=Outbound.Status.QUEUED, started_at=None, run_after=now
    )
    return pk if taken else None


def _claimed_left_behind() -> list[int]:
    """Calls rung claimed that no worker took while fresh (conversations/store/preclaimed.py), queued again."""
    from .store import preclaimed

    try:
        left = preclaimed.left_behind() if doorbell.enabled() else []
    except Exception:  # noqa: BLE001 - an unreachable broker must not stop the sweep of running rows
        logger.warning("sweeper could not read the calls rung claimed", exc_info=True)
        return []
    for pk in left:
        queue.publish(queue.EXECUTE_CALL, pk)
    if left:
        logger.warning("sweeper queued %s calls rung claimed that no worker took: %s", len(left), left[:20])
    return left


def testruns_sweep() -> list[int]:
    """Test runs still running: one more look each (their own chain of looks may have lost a message)."""
    from .models import TestRun

    quiet = timezone.now() - timedelta(seconds=10)  # a run being looked at every half second is left alone
    running = list(
        TestRun.objects.filter(status=TestRun.Status.RUNNING)
        .filter(Q(advanced_at__lt=quiet) | Q(advanced_at__isnull=True, created_at__lt=quiet))
        .values_list("pk", flat=True)
    )
    for run_id in running:
        queue.publish(queue.ADVANCE_TEST_RUN, run_id)
    return running


def outbound_sweep() -> list[int]:
    """The same for outbound messages (callbacks, WhatsApp replies)."""
    stuck = Outbound.objects.filter(status=Outbound.Status.RUNNING).values_list("pk", "started_at", "kind", "text")
    rows = [(pk, started, (kind, len(text))) for pk, started, kind, text in stuck]
    _fail_spent(rows)
    return _sweep(
        Outbound,
        queue.DELIVER_OUTBOUND,
        rows,
        lambda kind_size: outbox.running_timeout(*kind_size),
        _outbound_queued_again,
    )


def _fail_spent(rows) -> None:
    """An outbound row stuck running after its last try is not tried again: its worker died every time."""
    now = timezone.now()
    for pk, started_at, (kind, size) in rows:
        if started_at is None or started_at + timedelta(seconds=_deadline(outbox.running_timeout(kind, size))) > now:
            continue
        Outbound.objects.filter(
            pk=pk, status=Outbound.Status.RUNNING, started_at=started_at, tries__gte=settings.OUTBOX_MAX_TRIES
        ).update(
            status=Outbound.Status.FAILED,
            finished_at=now,
            last_error=f"Its worker stopped during each of its {settings.OUTBOX_MAX_TRIES} tries; not tried again.",
        )


def _deadline(timeout: float) -> float:
    """Seconds after its start that a running row counts as lost: its request has ended, and its worker has
    waited out a database blink to record it."""
    return timeout + settings.OUTBOX_RECORD_PATIENCE_SECONDS + settings.CALL_RUNNING_GRACE_SECONDS


def _sweep(
    model,
    task: str,
    running,
    timeout_of: Callable[[object], float],
    take_back: Callable[[int, datetime, datetime], int | None],
) -> list[int]:
    """Take back each running row past its deadline (`take_back` returns the id to ring, or None), and ring
    again the rows queued long past due."""
    now = timezone.now()
    swept: list[int] = []
    for pk, started_at, how_long in running:
        if started_at is None or started_at + timedelta(seconds=_deadline(timeout_of(how_long))) > now:
            continue
        queued = take_back(pk, started_at, now)
        if queued is not None:
            swept.append(queued)
    overdue = settings.CALL_QUEUED_STALE_SECONDS if broker_backlog() == 0 else settings.CALL_QUEUED_LOST_SECONDS
    due_before: datetime = now - timedelta(seconds=overdue)
    stuck_queued = list(
        model.objects.filter(status=model.Status.QUEUED, run_after__lt=due_before).values_list("pk", flat=True)[:5000]
    )
    model.objects.filter(pk__in=stuck_queued, status=model.Status.QUEUED).update(run_after=now)
    swept += stuck_queued
    for pk in swept:
        queue.publish(task, pk)
    if swept:
        logger.warning("sweeper queued %s stuck %s rows again: %s", len(swept), model.__name__, swept[:20])
    return swept


def broker_backlog() -> int:
    """Messages waiting in the default queue and doorbells waiting for a worker (0 when the broker cannot say).

    Doorbells count only while a worker listens: a list nobody reads (its last worker gone, or every worker
    started without it) is no backlog being worked through, and must not hold the sweeper to its longer wait.
    """
    try:
        waiting = doorbell.waiting() if doorbell.listening() else 0
    except Exception:  # noqa: BLE001 - an unreachable broker must not stop the sweep of running rows
        logger.warning("sweeper could not read the call doorbells' length", exc_info=True)
        waiting = 0
    return waiting + _celery_backlog()


def _celery_backlog() -> int:
    from kombu.exceptions import ChannelError

    from config.celery import app

    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            declared = connection.default_channel.queue_declare(queue=app.conf.task_default_queue, passive=True)
            return int(declared.message_count)
    except ChannelError:  # Redis keeps no key for an empty queue, so kombu answers "not found": nothing waits
        return 0
    except Exception:  # noqa: BLE001 - an unreachable broker must not stop the sweep of running rows
        logger.warning("sweeper could not read the broker's queue length", exc_info=True)
        return 0
