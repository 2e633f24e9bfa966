"""A relayed API request's call inserted already claimed (conversations/store/preclaimed.py): rung with what
its worker needs, answered without a claim, and never lost or sent twice when the ring is late, unreadable,
unconfirmed or left behind."""

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
from tests.helpers import execute_now, wait_until

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
def rings(monkeypatch, settings, published):
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
    return Call.objects.latest("pk")


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
@pytest.mark.parametrize("way", ["chat completions", "messages"])
def test_the_worker_reads_nothing_before_the_provider_call(client, integration_token, rings, sent, way):
    """Against the claim's read of the call, its conversation, connection, history and template: only the
    outcome is written. The connection comes from the worker's memory of it once its watcher listens."""
    remembered.read("warm-up", lambda: None)
    deadline = time.monotonic() + 10
    while not remembered.memory.listening:
        assert time.monotonic() < deadline, "the configuration watcher never started listening"
        time.sleep(0.01)
    for attempt in range(50):  # the first requests' own changes (the token's use noted) empty the memory
        if way == "messages":  # a conversation going on: its earlier turns are read as the message is stored
            message(client, integration_token[1], "+33600000001", f"Question {attempt}")
        else:
            relay(client, integration_token[1])
            Call.objects.exclude(pk=Call.objects.latest("pk").pk).delete()
        with CaptureQueriesContext(db) as statements:
            call = delivery.call_execute_claimed(rings[-1], worker="celery@a")
        if len(statements) == 1:
            break
    assert call.status == "succeeded" and len(statements) == 1, statements  # the record: reply and outcome
    assert attempt < 49
    if way == "messages":
        assert len(call.request["messages"]) > 3  # the system prompt and earlier turns came with the ring


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

    swept = sweeper.calls_sweep()  # the lost attempt is closed saying so; the message goes out as the next one

    again = call.latest_attempt()
    assert swept == [again.pk] and again.pk != call.pk
    assert published == [(queue.EXECUTE_CALL, again.pk, None)]
    execute_now(again.pk)
    assert delivery.call_execute_claimed(json.dumps(ring).encode(), worker="celery@late") is None

    again.refresh_from_db()
    assert (Call.objects.get(pk=call.pk).status, again.status) == ("failed", "succeeded")
    assert again.worker != "celery@late" and len(sent) == 1


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
def test_a_ring_redis_did_not_confirm_is_left_to_the_sweeper_not_queued_twice(
    client, integration_token, rings, published, monkeypatch, django_capture_on_commit_callbacks
):
    """Redis may have taken a ring whose answer was lost; queueing the call as well could send it twice."""

    def unconfirmed(packed):
        raise redis.TimeoutError("Timeout reading from socket")

    monkeypatch.setattr(doorbell, "ring_claimed", unconfirmed)
    with django_capture_on_commit_callbacks(execute=True):
        call = relay(client, integration_token[1])

    call.refresh_from_db()
    assert call.status == "running" and published == []
    assert sweeper.calls_sweep() == []  # not before its running deadline
    long_ago = call.started_at - timedelta(seconds=sweeper._deadline(call.connection.timeout_seconds) + 1)
    Call.objects.filter(pk=call.pk).update(started_at=long_ago)
    swept = sweeper.calls_sweep()
    again = call.latest_attempt()
    assert swept == [again.pk] and Call.objects.get(pk=call.pk).status == "failed"
    assert execute_now(again.pk).status == "succeeded"


@pytest.mark.django_db
def test_with_redis_unreachable_the_call_is_queued_as_usual(
    client, integration_token, published, monkeypatch, settings, django_capture_on_commit_callbacks
):
    """Nothing was sent (no connection could be made), so queueing it cannot send it twice: it is queued at
    once, for the sweeper's next pass while the broker is away, not left for the running deadline."""
    settings.API_CHAT_WAIT_SECONDS = 0
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    monkeypatch.setattr(doorbell, "taking_claimed", lambda: True)  # as read a moment before Redis went away
    with django_capture_on_commit_callbacks(execute=True):
        call = relay(client, integration_token[1])

    call.refresh_from_db()
    assert (call.status, call.started_at) == ("queued", None)
    assert published == [(queue.EXECUTE_CALL, call.pk, None)]
    assert execute_now(call.pk).status == "succeeded"


@pytest.mark.django_db
def test_a_call_whose_ring_cannot_be_made_is_queued_as_usual(
    client, integration_token, rings, published, monkeypatch, django_capture_on_commit_callbacks
):
    def unpackable(*args):
        raise TypeError("Decimal is not JSON serializable")

    monkeypatch.setattr(preclaimed, "pack", unpackable)
    with django_capture_on_commit_callbacks(execute=True):
        call = relay(client, integration_token[1])

    call.refresh_from_db()
    assert (call.status, call.started_at) == ("queued", None) and rings == []
    assert published == [(queue.EXECUTE_CALL, call.pk, None)]
    assert execute_now(call.pk).status == "succeeded"


@pytest.fixture
def claimed_list(monkeypatch):
    """A list of the test's own in the test broker, empty before and after: a worker of the session listens on
    the real one."""
    monkeypatch.setattr(doorbell, "CLAIMED", "test:claimed")
    doorbell.client().delete(doorbell.CLAIMED)
    yield doorbell.client()
    doorbell.client().delete(doorbell.CLAIMED)


@pytest.mark.django_db
def test_rings_no_worker_took_while_fresh_are_queued_again_by_the_sweeper(
    client, integration_token, rings, published, claimed_list, django_capture_on_commit_callbacks
):
    """Every worker that takes calls rung claimed died, or a rollback left only workers that do not."""
    with django_capture_on_commit_callbacks(execute=True):
        old, new = relay(client, integration_token[1]), relay(client, integration_token[1])
    late = old.started_at - timedelta(seconds=preclaimed.FRESH_SECONDS + 1)
    Call.objects.filter(pk=old.pk).update(started_at=late)
    ring = json.loads(rings[0])
    ring["call"]["started_at"] = late.isoformat()
    claimed_list.rpush(doorbell.CLAIMED, json.dumps(ring), rings[1])

    assert sweeper.calls_sweep() == [old.pk]

    assert published == [(queue.EXECUTE_CALL, old.pk, None)]
    assert Call.objects.get(pk=old.pk).status == "queued"
    assert claimed_list.lrange(doorbell.CLAIMED, 0, -1) == [rings[1]]  # the fresh one waits for its worker
    assert Call.objects.get(pk=new.pk).status == "running"


@pytest.mark.django_db
def test_a_ring_from_a_web_whose_clock_is_ahead_is_claimed_from_the_database_and_logged(
    client, integration_token, rings, sent, caplog, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        call = relay(client, integration_token[1])
    ahead = call.started_at + timedelta(seconds=30)
    Call.objects.filter(pk=call.pk).update(started_at=ahead)
    ring = json.loads(rings[0])
    ring["call"]["started_at"] = ahead.isoformat()

    delivery.call_execute_claimed(json.dumps(ring).encode(), worker="celery@a")

    assert Call.objects.get(pk=call.pk).status == "succeeded" and len(sent) == 1
    assert "the web's clock is ahead" in caplog.text


def test_a_worker_takes_turns_between_the_two_lists(monkeypatch, claimed_list):
    """Calls rung claimed must not starve the others (WhatsApp's, the console's, retries) or the reverse."""
    from types import SimpleNamespace

    monkeypatch.setattr(doorbell, "CALLS", "test:calls")  # with claimed_list's: a worker of the session listens
    lists = claimed_list
    lists.delete(doorbell.CALLS)
    lists.rpush(doorbell.CLAIMED, b"r1", b"r2", b"r3")
    lists.rpush(doorbell.CALLS, 1, 2, 3)
    listener = doorbell.Listener(SimpleNamespace(hostname="test", concurrency=1))

    taken = [listener._pop() for _ in range(6)]

    assert taken in ([b"r1", 1, b"r2", 2, b"r3", 3], [1, b"r1", 2, b"r2", 3, b"r3"])


def message(client, token: str, contact: str, text: str):
    body = {"template": "Support", "contact": contact, "message": text, "variables": {"business_name": "Acme"}}
    response = client.post("/api/v1/messages", json.dumps({**body, "wait": 0}), content_type="application/json",
                           **auth(token))  # fmt: skip
    assert response.status_code == 202, response.content
    return Call.objects.get(pk=response.json()["call_id"])


@pytest.mark.django_db
def test_a_message_continuing_a_conversation_is_sent_as_a_claim_would_send_it(
    client, integration_token, rings, published, monkeypatch, django_capture_on_commit_callbacks
):
    """The same two messages from two customers: one's second message queued and claimed from the database,
    the other's rung claimed with the earlier turns and the template's text. The provider gets the same."""
    token = integration_token[1]
    sent_to_provider = {}
    for contact, claimed in (("+33600000001", False), ("+33600000002", True)):
        monkeypatch.setattr(doorbell, "taking_claimed", lambda: False)
        with django_capture_on_commit_callbacks(execute=True):
            first = message(client, token, contact, "Do you deliver?")
        execute_now(first.pk)
        monkeypatch.setattr(doorbell, "taking_claimed", lambda claimed=claimed: claimed)
        with django_capture_on_commit_callbacks(execute=True):
            second = message(client, token, contact, "And on Sunday?")
        if claimed:
            assert second.status == "running" and published[-1][1] != second.pk
            delivery.call_execute_claimed(rings[-1], worker="celery@a")
        else:
            assert second.status == "queued" and published[-1][1] == second.pk
            execute_now(second.pk)
        second.refresh_from_db()
        assert second.status == "succeeded"
        sent_to_provider[claimed] = second.request

    assert sent_to_provider[True] == sent_to_provider[False]
    assert [m["role"] for m in sent_to_provider[True]["messages"]] == ["system", "user", "assistant", "user"]
    assert "Acme" in sent_to_provider[True]["messages"][0]["content"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("way", ["chat completions", "messages"])
def test_a_real_worker_answers_relayed_requests_rung_claimed(celery_worker, client, integration_token, way):
    doorbell._listening.clear()  # what this process last read of the workers, read again
    wait_until(lambda: doorbell.taking_claimed(), 15, "the worker to take calls rung claimed")
    token = integration_token[1]
    for text in ("Do you deliver?", "And on Sunday?"):
        if way == "messages":
            body = {"template": "Support", "contact": "+33600000009", "message": text, "wait": 20,
                    "variables": {"business_name": "Acme"}}  # fmt: skip
            response = client.post("/api/v1/messages", json.dumps(body), content_type="application/json", **auth(token))
            assert response.status_code == 200 and response.json()["reply"].startswith("Sandbox reply"), response.json()
        else:
            body = {"messages": [{"role": "user", "content": text}]}
            response = client.post("/api/v1/chat/completions", json.dumps(body), content_type="application/json",
                                   **auth(token))  # fmt: skip
            assert response.status_code == 200, response.json()
            assert response.json()["choices"][0]["message"]["content"].startswith("Sandbox reply")

    for call in Call.objects.all():
        assert (call.status, call.started_at) == ("succeeded", call.queued_at)  # claimed as the web queued it
        assert call.worker.startswith("test@")  # named by the worker when it recorded the outcome
    if way == "messages":
        assert len(Call.objects.latest("pk").request["messages"]) == 4  # system, the first turn and its reply, this one
