"""Connection limits kept in Redis: a rate that holds without bursts, a cap on calls at once, and waiting in line."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from connectors import ratelimit
from conversations import delivery, services
from conversations.models import Call


@pytest.fixture(autouse=True)
def fresh_limits(broker_url):
    ratelimit.client().delete(*ratelimit.client().keys("sb:*") or ["none"])


def test_each_call_reserves_the_next_slot_at_the_connections_rate():
    waits = [ratelimit.reserve(9001, per_second=10, max_wait=10) for _ in range(5)]

    assert waits[0] == pytest.approx(0, abs=0.02)
    steps = [later - earlier for earlier, later in zip(waits, waits[1:], strict=False)]
    assert all(step == pytest.approx(0.1, abs=0.02) for step in steps)  # one slot every 1/rate s, no burst


def test_a_slot_too_far_away_is_not_reserved():
    for _ in range(3):
        ratelimit.reserve(9002, per_second=1, max_wait=10)

    with pytest.raises(ratelimit.Deferred) as deferred:
        ratelimit.reserve(9002, per_second=1, max_wait=1)
    assert deferred.value.seconds == pytest.approx(3, abs=0.1)
    assert ratelimit.reserve(9002, per_second=1, max_wait=10) == pytest.approx(3, abs=0.1)  # nothing was taken


def test_at_most_the_limit_of_calls_at_once():
    first, second = ratelimit.acquire(9003, 2, 30), ratelimit.acquire(9003, 2, 30)
    assert first and second and ratelimit.acquire(9003, 2, 30) is None

    ratelimit.release(9003, first)
    assert ratelimit.acquire(9003, 2, 30)


def test_a_place_held_by_a_dead_worker_expires():
    assert ratelimit.acquire(9004, 1, hold_seconds=0.05)
    import time

    time.sleep(0.1)
    assert ratelimit.acquire(9004, 1, hold_seconds=30)


@pytest.mark.django_db
def test_a_call_over_the_concurrency_limit_waits_in_the_queue(connection, template, published):
    connection.max_concurrent = 1
    connection.save()
    held = ratelimit.acquire(connection.pk, 1, 30)  # another worker's call is in flight
    call = services.call_send(
        connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
    )

    delivery.call_execute(call_id=call.pk)

    call.refresh_from_db()
    requeued = [(row_id, countdown) for task, row_id, countdown in published if countdown]
    assert (call.status, call.attempt, requeued) == (Call.Status.QUEUED, 1, [(call.pk, 0.5)])
    ratelimit.release(connection.pk, held)
    delivery.call_execute(call_id=call.pk)  # the message came early: it is rung again for when the call is due
    assert published[-1][1:] == (call.pk, pytest.approx((call.run_after - timezone.now()).total_seconds(), abs=0.2))
    time.sleep(max(0.0, (call.run_after - timezone.now()).total_seconds()))
    delivery.call_execute(call_id=call.pk)
    call.refresh_from_db()
    assert call.status == Call.Status.SUCCEEDED
