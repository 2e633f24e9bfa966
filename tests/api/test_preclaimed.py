"""A relayed chat request's call inserted already claimed (conversations/store/preclaimed.py): rung with what
its worker needs, answered without a claim, and never lost or sent twice when the ring is late, unreadable
or refused."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
import redis
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from conversations import delivery, doorbell, queue, sweeper
from conversations.models import Call
from conversations.store import preclaimed, remembered
from tests.api.conftest import auth
from tests.helpers import execute_now

HISTORY = [
    {"role": "system", "content": "You answer for Acme."},
    {"role": "user", "content": "Do you deliver?"},
    {"role": "assistant", "content": "Yes, Monday to Friday."},
    {"role": "user", "content": "And on Sunday?"},
]


@pytest.fixture(autouse=True)
def postgresql_only():
    if db.vendor != "postgresql":
        pytest.skip("calls are inserted claimed on PostgreSQL only")


@pytest.fixture
def rings(monkeypatch, settings):
    """A worker that takes calls rung claimed, as far as the web can tell; what it was rung with."""
    settings.API_CHAT_WAIT_SECONDS = 0  # answer at once ("queued as call N"): the call is run below
    rung: list[bytes] = []
    monkeypatch.setattr(doorbell, "taking_claimed", lambda: True)
    monkeypatch.setattr(doorbell, "ring_claimed", lambda packed: rung.append(packed.encode()))
    return rung


@pytest.fixture
def sent(monkeypatch):
    """How many requests reached the provider from this process."""
    count = []
    real = delivery.adapter_for

    def counting(connection):
        adapter = real(connection)
        chat = adapter.chat
        adapter.chat = lambda **kwargs: (count.append(1), chat(**kwargs))[1]
        return adapter

    monkeypatch.setattr(delivery, "adapter_for", counting)
    return count


def relay(client, token: str):
    body = {"model": "mistral-small-latest", "messages": HISTORY, "user": "+4915112345678"}
    response = client.post("/api/v1/chat/completions", json.dumps(body), content_type="application/json", **auth(token))
    assert response.status_code == 503 and "queued as call" in response.json()["error"]["message"]
    return Call.objects.get()


@pytest.mark.django_db
def test_a_chat_request_is_rung_claimed_and_its_worker_answers_it(
    client, integration_token, rings, published, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call = relay(client, integration_token[1])

    assert (call.status, call.started_at) == ("running", call.queued_at)  # claimed as it was queued
    assert published == [] and len(rings) == 1  # rung on the claimed list only

    delivery.call_execute_claimed(rings[0], worker="celery@a")

    call.refresh_from_db()
    assert (call.status, call.worker, call.reply.content) == ("succeeded", "celery@a", call.reply_text)
    assert call.reply_text.startswith("Sandbox reply from mistral-small-latest: you said 'And on Sunday?'")
    assert call.request["messages"] == HISTORY  # the whole conversation, from the ring
    assert len(sent) == 1


@pytest.mark.django_db(transaction=True)
def test_the_worker_reads_nothing_before_the_provider_call(client, integration_token, rings, sent):
    """Against the claim's read of the call, its conversation, connection and history: only the outcome is
    written. The connection comes from the worker's memory of it once its watcher listens."""
    remembered.read("warm-up", lambda: None)
    deadline = time.monotonic() + 10
    while not remembered.memory.listening:
        assert time.monotonic() < deadline, "the configuration watcher never started listening"
        time.sleep(0.01)
    for attempt in range(50):  # the first requests' own changes (the token's use noted) empty the memory
        Call.objects.all().delete()
        relay(client, integration_token[1])
        with CaptureQueriesContext(db) as statements:
            call = delivery.call_execute_claimed(rings[-1], worker="celery@a")
        if len(statements) == 1:
            break
    assert call.status == "succeeded" and len(statements) == 1, statements  # the record: reply and outcome
    assert attempt < 49


@pytest.mark.django_db
def test_a_ring_popped_late_is_claimed_from_the_database_and_answered_once(
    client, integration_token, rings, sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call = relay(client, integration_token[1])
    late = call.started_at - timedelta(seconds=preclaimed.FRESH_SECONDS + 1)
    Call.objects.filter(pk=call.pk).update(started_at=late, queued_at=late)  # as if every worker was busy
    ring = json.loads(rings[0])
    ring["call"]["started_at"] = late.isoformat()

    delivery.call_execute_claimed(json.dumps(ring).encode(), worker="celery@b")
    delivery.call_execute_claimed(json.dumps(ring).encode(), worker="celery@c")  # the same ring again

    call.refresh_from_db()
    assert (call.status, call.worker) == ("succeeded", "celery@b")
    assert call.started_at > late  # claimed anew, with the worker's own token
    assert len(sent) == 1


@pytest.mark.django_db
def test_a_ring_for_a_call_the_sweeper_took_back_sends_nothing(
    client, integration_token, rings, published, sent, django_capture_on_commit_callbacks
):
    """Its doorbell was lost (Redis restarted): the call looks running with no worker, and the sweeper queues
    it again after the running deadline. A copy of the ring turning up later must not send it twice."""
    with django_capture_on_commit_callbacks(execute=True):
        call = relay(client, integration_token[1])
    long_ago = call.started_at - timedelta(seconds=sweeper._deadline(call.connection.timeout_seconds) + 1)
    Call.objects.filter(pk=call.pk).update(started_at=long_ago, queued_at=long_ago)
    ring = json.loads(rings[0])
    ring["call"]["started_at"] = long_ago.isoformat()

    assert sweeper.calls_sweep() == [call.pk]
    assert published == [(queue.EXECUTE_CALL, call.pk, None)]
    execute_now(call.pk)
    assert delivery.call_execute_claimed(json.dumps(ring).encode(), worker="celery@late") is None

    call.refresh_from_db()
    assert call.status == "succeeded" and call.worker != "celery@late"
    assert len(sent) == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "spoil",
    [
        lambda ring: {**ring, "v": 99},  # a worker of another version
        lambda ring: {**ring, "history": 5},
        lambda ring: {**ring, "conversation": {**ring["conversation"], "id": ring["conversation"]["id"] + 1}},
        lambda ring: {**ring, "call": {**ring["call"], "connection_id": 10**9}},  # its connection was deleted
    ],
)
def test_a_ring_that_cannot_be_read_whole_still_gets_its_call_answered(
    client, integration_token, rings, sent, spoil, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call = relay(client, integration_token[1])

    delivery.call_execute_claimed(json.dumps(spoil(json.loads(rings[0]))).encode(), worker="celery@a")

    call.refresh_from_db()
    assert (call.status, call.worker) == ("succeeded", "celery@a")
    assert call.reply_text.startswith("Sandbox reply") and len(sent) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("junk", [b"not json", b"{}", b'{"call": {"id": "x"}}', b"[1]"])
def test_a_ring_that_names_no_call_is_dropped_and_logged(junk, caplog):
    assert delivery.call_execute_claimed(junk, worker="celery@a") is None
    assert "dropped a call rung claimed that names no call" in caplog.text


@pytest.mark.django_db
def test_when_redis_refuses_the_ring_the_call_is_queued_as_usual(
    client, integration_token, rings, published, monkeypatch, django_capture_on_commit_callbacks
):
    def refused(packed):
        raise redis.ConnectionError("Connection refused")

    monkeypatch.setattr(doorbell, "ring_claimed", refused)
    with django_capture_on_commit_callbacks(execute=True):
        call = relay(client, integration_token[1])

    call.refresh_from_db()
    assert (call.status, call.started_at) == ("queued", None)  # a worker can claim it, or the sweeper finds it
    assert published == [(queue.EXECUTE_CALL, call.pk, None)]
    assert execute_now(call.pk).status == "succeeded"
