"""A request waiting for its reply is woken through Redis; the database stays the truth."""

from __future__ import annotations

import threading

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
    wakeup.wait(api_call.message_id, 0.25)
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
