"""Retries, the at-most-once guard and the sweeper, in-process against the sandbox."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

import pytest
from django.db import close_old_connections
from django.db import connection as db
from django.urls import reverse
from django.utils import timezone

from connectors.errors import ErrorKind
from conversations import delivery, prices, services, sweeper
from conversations.models import Call, Message
from conversations.queue import EXECUTE_CALL
from conversations.store import remembered
from tests.factories import ConnectionFactory
from tests.helpers import execute_now

pytestmark = pytest.mark.django_db


class CallsPublished:
    """A live view of the calls published so far, as (call id, countdown) pairs."""

    def __init__(self, published):
        self.published = published

    def _pairs(self):
        return [(row_id, countdown or 0) for task, row_id, countdown in self.published if task == EXECUTE_CALL]

    def __iter__(self):
        return iter(self._pairs())

    def __getitem__(self, index):
        return self._pairs()[index]

    def __eq__(self, other):
        return self._pairs() == other

    def __repr__(self):
        return repr(self._pairs())


@pytest.fixture
def queued(published):
    return CallsPublished(published)


def send(connection, template, model="mistral-small-latest"):
    connection.model = model
    connection.save()
    return services.call_send(
        connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
    )


def test_a_server_error_is_retried_as_a_new_attempt(connection, template, queued, django_capture_on_commit_callbacks):
    call = send(connection, template, "sandbox-server-error")

    with django_capture_on_commit_callbacks(execute=True):
        delivery.call_execute(call_id=call.pk)

    retry = Call.objects.get(attempt=2)
    assert (retry.message_id, retry.status) == (call.message_id, Call.Status.QUEUED)
    assert retry.run_after > timezone.now() - timedelta(seconds=1)
    assert queued == [(retry.pk, pytest.approx((retry.run_after - retry.queued_at).total_seconds(), abs=0.1))]
    assert call.latest_attempt() == retry


def test_retries_stop_at_the_connections_maximum(connection, template, queued, django_capture_on_commit_callbacks):
    connection.max_attempts = 2
    call = send(connection, template, "sandbox-overloaded")

    with django_capture_on_commit_callbacks(execute=True):
        delivery.call_execute(call_id=call.pk)
    with django_capture_on_commit_callbacks(execute=True):
        execute_now(call.latest_attempt().pk)

    attempts = list(Call.objects.order_by("attempt").values_list("attempt", "status", "error_kind"))
    assert attempts == [(1, "failed", "provider_error"), (2, "failed", "provider_error")]


def test_retry_after_is_honoured(connection, template, queued, django_capture_on_commit_callbacks):
    call = send(connection, template, "sandbox-rate-limit")

    with django_capture_on_commit_callbacks(execute=True):
        delivery.call_execute(call_id=call.pk)

    assert queued[0][1] >= 1.0  # the sandbox says Retry-After: 1


@pytest.mark.parametrize(
    ("model", "api_key"),
    [
        ("mistral-small-latest", "wrong-key"),
        ("sandbox-forbidden", None),
        ("no-such-model", None),
        ("sandbox-empty-choices", None),
    ],
)
def test_errors_a_retry_cannot_fix_are_not_retried(connection, template, queued, model, api_key):
    if api_key:
        connection.set_api_key(api_key)
    call = send(connection, template, model)

    delivery.call_execute(call_id=call.pk)

    assert Call.objects.count() == 1 and queued == []


def test_the_backoff_grows_and_is_capped(settings):
    settings.CALL_RETRY_BACKOFF_SECONDS = 1.0
    settings.CALL_RETRY_BACKOFF_MAX_SECONDS = 4.0
    delays = [delivery.retry_delay(attempt, None) for attempt in (1, 2, 3, 4, 5) for _ in range(50)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert max(delivery.retry_delay(1, None) for _ in range(50)) <= 1.0
    assert delivery.retry_delay(1, 30.0) == 30.0


def test_an_outcome_from_a_worker_that_lost_its_call_is_dropped(connection, template, monkeypatch):
    call = send(connection, template)
    real_chat = delivery.chat_completions.chat

    def chat_while_the_sweeper_takes_over(**kwargs):
        # Meanwhile the sweeper decided this worker was dead and handed the call to another.
        Call.objects.filter(pk=call.pk).update(status=Call.Status.QUEUED, started_at=None)
        return real_chat(**kwargs)

    monkeypatch.setattr(delivery.chat_completions, "chat", chat_while_the_sweeper_takes_over)
    delivery.call_execute(call_id=call.pk)

    call.refresh_from_db()
    assert call.status == Call.Status.QUEUED
    assert not Message.objects.filter(role=Message.Role.ASSISTANT).exists()


def test_the_sweeper_requeues_calls_stuck_queued_or_running(connection, template, queued, settings, monkeypatch):
    monkeypatch.setattr(sweeper, "broker_backlog", lambda: 0)
    settings.CALL_QUEUED_STALE_SECONDS = 60
    settings.CALL_RUNNING_GRACE_SECONDS = 10
    long_ago = timezone.now() - timedelta(minutes=10)
    lost = send(connection, template)
    Call.objects.filter(pk=lost.pk).update(run_after=long_ago)
    fresh = send(connection, template)
    dead_worker = send(connection, template)
    Call.objects.filter(pk=dead_worker.pk).update(status=Call.Status.RUNNING, started_at=long_ago)
    still_running = send(connection, template)
    Call.objects.filter(pk=still_running.pk).update(status=Call.Status.RUNNING, started_at=timezone.now())

    swept = sweeper.calls_sweep()

    # The dead worker's attempt may have reached the provider: it is closed saying so, and the message goes
    # out again as the next attempt, so the log shows both sends.
    again = Call.objects.get(message_id=dead_worker.message_id, attempt=2)
    assert sorted(swept) == sorted([lost.pk, again.pk])
    assert sorted(call_id for call_id, _ in queued) == sorted([lost.pk, again.pk])
    closed = Call.objects.get(pk=dead_worker.pk)
    assert (closed.status, closed.error_kind, again.status) == ("failed", "internal", "queued")
    assert "stopped before recording it" in closed.error_message
    assert f"may have answered and billed it. The message was sent again as call {again.pk}." in closed.error_message
    assert Call.objects.get(pk=fresh.pk).status == Call.Status.QUEUED
    assert sweeper.calls_sweep() == []  # swept calls are due again from now, not swept twice
    assert execute_now(again.pk).status == "succeeded" and dead_worker.latest_attempt() == again


def test_an_empty_broker_queue_is_a_backlog_of_zero_without_a_warning(broker_url, caplog):
    from config.celery import app

    app.control.purge()  # Redis then holds no key for the queue, and kombu calls it "not found"
    with caplog.at_level(logging.WARNING, logger="conversations.sweeper"):
        assert sweeper.broker_backlog() == 0
    assert not caplog.records  # the sweeper runs every 30 s: an idle system must not log a traceback each time


@pytest.mark.parametrize("listening", [True, False])
def test_doorbells_count_as_a_backlog_only_while_a_worker_listens(broker_url, monkeypatch, listening):
    from config.celery import app
    from conversations import doorbell

    app.control.purge()
    # Keys of their own: no running worker takes from this list or marks this key.
    monkeypatch.setattr(doorbell, "CALLS", "sb:calls:backlog-test")
    monkeypatch.setattr(doorbell, "LISTENING", "sb:calls:backlog-test:listening")
    monkeypatch.setattr(doorbell, "_listening", {})
    redis = doorbell.client()
    redis.delete(doorbell.CALLS, doorbell.LISTENING)
    if listening:
        redis.set(doorbell.LISTENING, "worker@test", ex=60)
    for call_id in (1, 2, 3):
        doorbell.ring(call_id)
    try:
        # Nobody listening: a list nobody reads is no backlog, and must not hold the sweeper to its long wait.
        assert sweeper.broker_backlog() == (3 if listening else 0)
    finally:
        redis.delete(doorbell.CALLS, doorbell.LISTENING)


def test_a_backlog_in_the_broker_is_not_queued_twice(connection, template, queued, settings, monkeypatch):
    settings.CALL_QUEUED_STALE_SECONDS = 60
    monkeypatch.setattr(sweeper, "broker_backlog", lambda: 250)  # workers are still working through messages
    call = send(connection, template)
    Call.objects.filter(pk=call.pk).update(run_after=timezone.now() - timedelta(minutes=10))

    assert sweeper.calls_sweep() == []


def test_a_call_lost_long_ago_is_queued_again_even_through_a_backlog(
    connection, template, queued, settings, monkeypatch
):
    settings.CALL_QUEUED_STALE_SECONDS, settings.CALL_QUEUED_LOST_SECONDS = 60, 900
    monkeypatch.setattr(sweeper, "broker_backlog", lambda: 250)  # the queue never empties
    lost = send(connection, template)
    Call.objects.filter(pk=lost.pk).update(run_after=timezone.now() - timedelta(minutes=20))
    overdue = send(connection, template)  # probably still waiting in that backlog
    Call.objects.filter(pk=overdue.pk).update(run_after=timezone.now() - timedelta(minutes=10))

    assert sweeper.calls_sweep() == [lost.pk]
    assert [call_id for call_id, _ in queued] == [lost.pk]
    assert sweeper.calls_sweep() == []  # due again from now: not queued again until another 15 minutes pass


def test_a_retry_scheduled_for_later_is_not_swept_early(connection, template, queued, settings, monkeypatch):
    settings.CALL_QUEUED_STALE_SECONDS = 60
    monkeypatch.setattr(sweeper, "broker_backlog", lambda: 0)
    call = send(connection, template)
    Call.objects.filter(pk=call.pk).update(run_after=timezone.now() + timedelta(seconds=30))
    assert sweeper.calls_sweep() == []


def test_the_result_panel_shows_earlier_attempts(admin_client, connection, template, queued):
    call = send(connection, template, "sandbox-server-error")
    delivery.call_execute(call_id=call.pk)
    retry = call.latest_attempt()

    fragment = admin_client.get(reverse("conversations:call_status", args=[call.pk])).content.decode()

    assert f'id="call-{retry.pk}"' in fragment and "attempt 2 of 3" in fragment
    assert "Attempt 1: Provider error: Internal server error (HTTP 500)" in fragment
    assert ErrorKind.PROVIDER_ERROR.label in fragment


@pytest.mark.django_db(transaction=True)
@pytest.mark.sandbox_delay(1.0)
def test_an_outcome_is_recorded_when_the_database_connection_dies_during_the_provider_call(
    slow_sandbox, template, queued
):
    """The server dropping the worker's database connections while the provider thinks (a restart, an idle
    timeout in a proxy) must not lose the reply, even when something is read after the call (the prices)."""
    if db.vendor != "postgresql":
        pytest.skip("a pooled connection to cut: PostgreSQL only")
    # A new pool: threads of earlier tests may still hold connections of this process's pool, and every one
    # cut below must be replaceable.
    db.close()
    db.close_pool()
    call = send(ConnectionFactory(name="Slow", base_url=slow_sandbox.base_url), template)
    prices.forget()  # so that the worker reads the prices after the call, before its outcome is written

    def work():
        try:
            delivery.call_execute(call_id=call.pk, worker="test")
        finally:
            close_old_connections()

    worker = threading.Thread(target=work)
    worker.start()
    deadline = timezone.now() + timedelta(seconds=10)
    while Call.objects.get(pk=call.pk).status != Call.Status.RUNNING:
        assert timezone.now() < deadline, "the call never started"
    with db.cursor() as cursor:  # every other connection to this database: the worker's among them
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name <> %s",
            [remembered.APPLICATION_NAME],
        )
    worker.join(30)

    call.refresh_from_db()
    assert call.status == Call.Status.SUCCEEDED, (call.error_kind, call.error_message)
    assert call.reply_text == "Sandbox reply from mistral-small-latest: you said 'Hi'."
