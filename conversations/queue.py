"""Ringing the workers: publish a task by name with a row's id, and never fail because the broker is away.

Guarantees, and how they are kept:
- A broker message is a doorbell, never the record: every task here takes the id of a row (a call, an
  outbound message) that was committed first, and the sweeper (conversations/sweeper.py) rings again for
  any row left queued. So a publish that fails is logged and reported, not raised: the request or task
  that committed the row finishes normally, and the row is marked due for the sweeper's next pass.
- Publishing gives up quickly (CELERY_TASK_PUBLISH_RETRY_POLICY): with the broker down, a web request
  waits a fraction of a second for it, not a connection timeout per message.
- A call due now is rung through a Redis list of its own when a worker listens on it (conversations/doorbell.py):
  the same doorbell, without Celery's costs.
- Tasks are named, not imported, so that services, delivery and the sweeper do not import tasks.py (which
  imports them): the arrows point one way.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from . import doorbell

logger = logging.getLogger(__name__)

EXECUTE_CALL = "conversations.execute_call"
DELIVER_OUTBOUND = "conversations.deliver_outbound"
ADVANCE_TEST_RUN = "conversations.advance_test_run"


def broker_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError
    from redis.exceptions import RedisError

    return (OperationalError, RedisError, ConnectionError, TimeoutError)


# A call due later (a burst's window, a retry's backoff) is rung this much early; the worker waits out the
# rest (delivery.call_execute), so the call starts when it is due rather than a broker round trip later.
RING_EARLY = 0.1


def publish(task: str, row_id: int, *, countdown: float | None = None) -> bool:
    """Send the task now; False (logged) if the broker could not take it."""
    from config.celery import app

    if task == EXECUTE_CALL and countdown:
        countdown = countdown - RING_EARLY if countdown > RING_EARLY else None
    try:
        if task == EXECUTE_CALL and not countdown and doorbell.listening():
            doorbell.ring(row_id)
        else:
            app.send_task(task, args=(row_id,), countdown=countdown or None)
    except broker_errors() as error:
        logger.warning("broker unavailable, %s(%s) left for the sweeper: %s", task, row_id, error)
        _due_for_the_sweeper(task, row_id)
        return False
    return True


def publish_on_commit(task: str, row_id: int, *, countdown: float | None = None) -> None:
    """Send the task once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: publish(task, row_id, countdown=countdown))


def _due_for_the_sweeper(task: str, row_id: int) -> None:
    """Date the row back so that the sweeper's next pass queues it again even through a busy queue."""
    from .models import Call, Outbound

    model = {EXECUTE_CALL: Call, DELIVER_OUTBOUND: Outbound}.get(task)
    if model is None:
        return
    overdue = timezone.now() - timedelta(seconds=settings.CALL_QUEUED_LOST_SECONDS + 1)
    try:
        model.objects.filter(pk=row_id, status=model.Status.QUEUED).update(run_after=overdue)
    except Exception:  # noqa: BLE001 - the database may be away too; the sweeper still finds the row later
        logger.warning("could not mark %s %s for the sweeper", model.__name__, row_id, exc_info=True)
