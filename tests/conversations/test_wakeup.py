"""A request waiting for its reply is woken through Redis; the database stays the truth."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
import redis

from conversations import delivery, inbound, services, wakeup
from conversations.api.tokens import integration_create
from conversations.models import Call
from tests.helpers import execute_now

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api_call(broker_url, connection, template, published):
    integration, _ = integration_create(name="Bot", templates=[template], connections=[connection])
    return services.call_send(
        connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"},
        integration=integration, contact="+15550100100",
    )  # fmt: skip


def test_the_worker_rings_for_an_api_message_and_a_ring_before_the_wait_is_kept(api_call):
    key = f"sb:answered:{api_call.message_id}"
    wakeup.client().delete(key)

    execute_now(api_call.pk)

    assert wakeup.client().llen(key) == 1  # rung once the outcome was committed, kept for a waiter to come
    assert inbound.wait_for(api_call, 5).status == Call.Status.SUCCEEDED
    wakeup.wait(api_call, 0.25)
    assert wakeup.client().llen(key) == 0  # taken by the waiter


def test_a_waiter_blocked_in_redis_gets_the_reply_the_worker_records(api_call):
    waited = {}

    def wait():
        waited["call"] = inbound.wait_for(Call.objects.get(pk=api_call.pk), 10)

    waiter = threading.Thread(target=wait)
    waiter.start()
    delivery.call_execute(call_id=api_call.pk)
    waiter.join(15)
    assert waited["call"].status == Call.Status.SUCCEEDED and waited["call"].reply_text


def test_with_redis_away_the_waiter_polls_the_database(api_call, monkeypatch):
    def away():
        raise redis.ConnectionError("Redis is away")

    monkeypatch.setattr(wakeup, "client", away)
    execute_now(api_call.pk)  # the ring is lost
    assert inbound.wait_for(Call.objects.get(pk=api_call.pk), 5).status == Call.Status.SUCCEEDED


def test_the_last_attempts_ring_carries_its_row_so_the_waiter_reads_nothing_back(api_call, django_assert_num_queries):
    execute_now(api_call.pk)
    stored = Call.objects.get(pk=api_call.pk)

    with django_assert_num_queries(0):
        answered = inbound.wait_for(api_call, 5, fresh=True)

    assert (answered.pk, answered.status, answered.reply_text) == (stored.pk, Call.Status.SUCCEEDED, stored.reply_text)
    assert (answered.finished_at, answered.prompt_tokens, answered.model) == (
        stored.finished_at, stored.prompt_tokens, stored.model,
    )  # fmt: skip
    assert answered.request == stored.request  # left out of the ring: read from the database when asked


def test_a_failed_attempt_with_a_retry_to_come_rings_without_its_row(api_call, connection):
    connection.model = "sandbox-server-error"  # a 500: retried
    connection.save()
    key = f"sb:answered:{api_call.message_id}"
    wakeup.client().delete(key)

    execute_now(api_call.pk)

    assert wakeup.client().lrange(key, 0, -1) == [wakeup.BARE]
    waiting = inbound.wait_for(api_call, 0.3, fresh=True)  # woken, it finds the retry queued and waits on
    assert (waiting.attempt, waiting.status) == (2, Call.Status.QUEUED)


def test_a_ring_it_cannot_read_sends_the_waiter_to_the_database(api_call, caplog):
    execute_now(api_call.pk)
    key = f"sb:answered:{api_call.message_id}"
    wakeup.client().delete(key)
    wakeup.client().rpush(key, b'{"id": "not a number"}')

    assert inbound.wait_for(api_call, 5, fresh=True).status == Call.Status.SUCCEEDED
    assert "an unreadable ring" in caplog.text


def test_a_leftover_ring_for_a_message_of_the_same_id_is_not_taken_for_its_answer(api_call):
    """A database recreated within the ring's TTL gives a new message an old id: the old ring's reply is not it."""
    execute_now(api_call.pk)
    leftover = Call.objects.get(pk=api_call.pk)
    leftover.reply_text, leftover.queued_at = "An answer to another customer", api_call.queued_at - timedelta(hours=1)
    key = f"sb:answered:{api_call.message_id}"
    wakeup.client().delete(key)
    wakeup.ring(api_call.message_id, leftover)

    answered = inbound.wait_for(api_call, 5, fresh=True)

    assert answered.reply_text == Call.objects.get(pk=api_call.pk).reply_text != "An answer to another customer"


def test_a_row_that_cannot_travel_rings_without_it(api_call, caplog):
    execute_now(api_call.pk)
    stored = Call.objects.get(pk=api_call.pk)
    stored.model = object()  # nothing JSON can carry
    key = f"sb:answered:{api_call.message_id}"
    wakeup.client().delete(key)

    wakeup.ring(api_call.message_id, stored)

    assert wakeup.client().lrange(key, 0, -1) == [wakeup.BARE] and "ringing without it" in caplog.text
