"""The safety net under the broker: calls the database accepted but no worker is going to finish."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .models import Call

logger = logging.getLogger(__name__)


def calls_sweep() -> list[int]:
    """Queue again the calls whose broker message was lost or whose worker died. Returns their ids."""
    from .tasks import execute_call

    now = timezone.now()
    swept: list[int] = []
    grace = timedelta(seconds=settings.CALL_RUNNING_GRACE_SECONDS)
    stuck_running = Call.objects.filter(status=Call.Status.RUNNING, started_at__lt=now - grace)
    for call_id, started_at, timeout in stuck_running.values_list("pk", "started_at", "connection__timeout_seconds"):
        # A running call is only stuck once its own timeout has passed too: the HTTP call has ended by then.
        if started_at + timedelta(seconds=timeout) + grace > now:
            continue
        if Call.objects.filter(pk=call_id, status=Call.Status.RUNNING, started_at=started_at).update(
            status=Call.Status.QUEUED, started_at=None, run_after=now
        ):
            swept.append(call_id)
    # While the broker still holds messages, overdue calls are most likely a backlog being worked through:
    # queueing them again would only grow it. Once it is empty, a queued call's message is truly gone. A
    # call overdue by CALL_QUEUED_LOST_SECONDS is queued again even through a backlog: a worker killed
    # outright takes its calls' messages with it (config/broker.py keeps no copy in Redis), and a busy
    # queue might never be empty. Each call is queued again at most once per that period.
    overdue = settings.CALL_QUEUED_STALE_SECONDS if broker_backlog() == 0 else settings.CALL_QUEUED_LOST_SECONDS
    due_before = now - timedelta(seconds=overdue)
    stuck_queued = list(
        Call.objects.filter(status=Call.Status.QUEUED, run_after__lt=due_before).values_list("pk", flat=True)[:5000]
    )
    Call.objects.filter(pk__in=stuck_queued, status=Call.Status.QUEUED).update(run_after=now)
    swept += stuck_queued
    for call_id in swept:
        execute_call.delay(call_id)
    if swept:
        logger.warning("sweeper queued %s stuck calls again: %s", len(swept), swept[:20])
    return swept


def broker_backlog() -> int:
    """Messages waiting in the default queue (0 when the broker cannot say)."""
    from kombu.exceptions import ChannelError

    from config.celery import app

    try:
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)
            declared = connection.default_channel.queue_declare(queue=app.conf.task_default_queue, passive=True)
            return int(declared.message_count)
    except ChannelError:  # Redis keeps no key for an empty queue, so kombu answers "not found": nothing waits
        return 0
    except Exception:  # noqa: BLE001 - an unreachable broker must not stop the sweep of running calls
        logger.warning("sweeper could not read the broker's queue length", exc_info=True)
        return 0
