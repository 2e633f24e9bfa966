"""The outbox: callbacks and WhatsApp replies as durable rows, retried, swept, recorded even through a blink."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from config.celery import app
from conversations import delivery, outbox, queue, services, sweeper, tries
from conversations.api.tokens import integration_create
from conversations.models import CallbackAttempt, Outbound
from tests.factories import ConnectionFactory, TemplateFactory

pytestmark = pytest.mark.django_db


class Receiver(BaseHTTPRequestHandler):
    """Answers each POST with the next status of `statuses` (200 once they run out), and keeps the bodies."""

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((dict(self.headers), json.loads(body)))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received, server.statuses = [], []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def answered(sandbox, receiver, django_capture_on_commit_callbacks, published):
    """A call from an integration with a callback URL, answered by the sandbox: its outbox row is queued."""
    connection = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=1)
    template = TemplateFactory(name="Support")
    integration, _ = integration_create(
        name="Bot",
        templates=[template],
        connections=[connection],
        callback_url=f"http://127.0.0.1:{receiver.server_port}/hook",
    )
    call = services.call_send(
        connection=connection,
        template=template,
        customer_message="Hi",
        variables={"business_name": "Acme"},
        integration=integration,
        contact="+15550001111",
    )
    with django_capture_on_commit_callbacks(execute=True):
        delivery.call_execute(call_id=call.pk)
    return Outbound.objects.get(call=call)


def test_a_finished_call_puts_its_callback_in_the_outbox_and_rings_once(answered, published):
    assert (answered.kind, answered.status, answered.tries) == ("callback", "queued", 0)
    assert ("conversations.deliver_outbound", answered.pk, None) in published


def test_the_callback_is_retried_after_a_5xx_and_each_try_is_a_row(answered, receiver, published):
    receiver.statuses = [503]

    outbox.outbound_deliver(outbound_id=answered.pk)
    answered.refresh_from_db()
    assert (answered.status, answered.tries) == ("queued", 1)
    assert "HTTP 503" in answered.last_error
    outbox.outbound_deliver(outbound_id=answered.pk)

    answered.refresh_from_db()
    assert (answered.status, answered.tries) == ("sent", 2)
    attempts = list(CallbackAttempt.objects.order_by("attempt").values_list("attempt", "http_status"))
    assert attempts == [(1, 503), (2, 200)]
    headers, body = receiver.received[-1]
    assert headers["X-Switchboard-Delivery"] == str(answered.pk) and body["delivery_id"] == answered.pk
    assert body["reply"].startswith("Sandbox reply")


def test_a_4xx_from_the_receiver_is_not_retried(answered, receiver):
    receiver.statuses = [410]
    outbox.outbound_deliver(outbound_id=answered.pk)
    answered.refresh_from_db()
    assert (answered.status, answered.last_error) == ("failed", "The callback URL answered HTTP 410.")


def test_a_callback_url_the_guard_refuses_fails_without_a_retry(answered, settings):
    settings.ALLOWED_PROVIDER_HOSTS = []  # 127.0.0.1 is internal now
    from connectors import safety

    safety.forget_verdicts()
    outbox.outbound_deliver(outbound_id=answered.pk)
    answered.refresh_from_db()
    assert answered.status == "failed" and "plain http" in answered.last_error


def test_a_duplicate_message_for_a_row_does_nothing(answered, receiver):
    outbox.outbound_deliver(outbound_id=answered.pk)
    assert outbox.outbound_deliver(outbound_id=answered.pk) is None
    assert len(receiver.received) == 1


def test_a_delivery_the_sweeper_handed_on_is_not_recorded_twice(answered, receiver, monkeypatch):
    """The worker comes back after the sweeper gave its row to another: its outcome is dropped."""
    real_try = outbox._SENDERS["callback"]

    def slow_try(row):
        result = real_try(row)
        Outbound.objects.filter(pk=row.pk).update(status="queued", started_at=None)  # the sweeper, meanwhile
        return result

    monkeypatch.setitem(outbox._SENDERS, "callback", slow_try)
    outbox.outbound_deliver(outbound_id=answered.pk)
    answered.refresh_from_db()
    assert answered.status == "queued"  # as the sweeper left it, for the next worker


def test_with_the_broker_down_the_row_waits_for_the_sweeper(
    sandbox, receiver, django_capture_on_commit_callbacks, monkeypatch, settings
):
    def broker_down(*args, **kwargs):
        raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    connection = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=1)
    template = TemplateFactory(name="Support")
    integration, _ = integration_create(
        name="Bot",
        templates=[template],
        connections=[connection],
        callback_url=f"http://127.0.0.1:{receiver.server_port}/",
    )
    monkeypatch.setattr(app, "send_task", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        call = services.call_send(
            connection=connection,
            template=template,
            customer_message="Hi",
            variables={"business_name": "Acme"},
            integration=integration,
        )
    with django_capture_on_commit_callbacks(execute=True):
        delivery.call_execute(call_id=call.pk)  # the outcome is recorded; ringing for its callback fails

    call.refresh_from_db()
    row = Outbound.objects.get(call=call)
    assert call.status == "succeeded" and row.status == "queued"
    assert row.run_after < timezone.now() - timedelta(seconds=settings.CALL_QUEUED_LOST_SECONDS)

    rung = []
    monkeypatch.setattr(app, "send_task", lambda name, args, **kwargs: rung.append((name, args)))
    monkeypatch.setattr(sweeper, "broker_backlog", lambda: 5)  # even through a busy queue
    sweeper.outbound_sweep()
    assert rung == [("conversations.deliver_outbound", (row.pk,))]


def test_a_delivery_whose_worker_died_is_queued_again(answered, settings, published):
    deadline = 15 + settings.OUTBOX_RECORD_PATIENCE_SECONDS + settings.CALL_RUNNING_GRACE_SECONDS
    Outbound.objects.filter(pk=answered.pk).update(status="running", started_at=timezone.now(), tries=1)
    assert sweeper.outbound_sweep() == []  # its worker may still be sending, or waiting to record
    stale = timezone.now() - timedelta(seconds=deadline + 1)
    Outbound.objects.filter(pk=answered.pk).update(status="running", started_at=stale, tries=1)

    assert sweeper.outbound_sweep() == [answered.pk]
    answered.refresh_from_db()
    assert answered.status == "queued"


def test_a_delivery_that_kills_its_worker_every_time_stops_after_its_last_try(answered, settings, published):
    stale = timezone.now() - timedelta(hours=1)
    Outbound.objects.filter(pk=answered.pk).update(status="running", started_at=stale, tries=settings.OUTBOX_MAX_TRIES)

    assert sweeper.outbound_sweep() == []
    answered.refresh_from_db()
    assert (
        answered.status == "failed"
        and f"stopped during each of its {settings.OUTBOX_MAX_TRIES} tries" in answered.last_error
    )


@pytest.mark.django_db(transaction=True)  # outside a transaction, as a worker records
def test_a_record_waits_for_the_database_to_come_back():
    calls = []

    def blinking():
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("server closed the connection unexpectedly")
        return "recorded"

    assert tries.durably(blinking) == "recorded" and len(calls) == 3


def test_a_record_gives_up_on_a_real_bug_at_once():
    def bug():
        raise KeyError("not an outage")

    with pytest.raises(KeyError):
        tries.durably(bug)


def test_publish_never_raises_when_the_broker_is_away(monkeypatch, ring_path):
    import redis

    from conversations import doorbell

    def broker_down(*args, **kwargs):
        raise BrokerError("Connection refused")

    def redis_down(*args, **kwargs):
        raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(app, "send_task", broker_down)
    monkeypatch.setattr(doorbell, "ring", redis_down)
    assert queue.publish(queue.EXECUTE_CALL, 123) is False


def test_a_long_callback_url_is_delivered_and_its_try_recorded(answered, receiver):
    long_url = f"http://127.0.0.1:{receiver.server_port}/" + "hook/" * 80  # 400 characters and more
    answered.conversation.integration.__class__.objects.filter(pk=answered.conversation.integration_id).update(
        callback_url=long_url
    )

    outbox.outbound_deliver(outbound_id=answered.pk)

    answered.refresh_from_db()
    assert answered.status == "sent"
    assert CallbackAttempt.objects.get().url == long_url


def test_a_receiver_down_for_hours_still_gets_its_callback_and_every_wait_is_at_least_half_its_ceiling(monkeypatch):
    """With the defaults, even the shortest waits the jitter can draw keep trying for over four hours (an
    outage run lost callbacks when seven tries with waits drawn from zero ran out in 14 s)."""
    from config.settings import base

    monkeypatch.setattr(outbox.settings, "OUTBOX_RETRY_BACKOFF_SECONDS", base.OUTBOX_RETRY_BACKOFF_SECONDS)
    monkeypatch.setattr(outbox.settings, "OUTBOX_RETRY_BACKOFF_MAX_SECONDS", base.OUTBOX_RETRY_BACKOFF_MAX_SECONDS)
    monkeypatch.setattr(outbox.random, "uniform", lambda low, high: low)  # every draw as short as it can be

    shortest = sum(outbox.retry_delay(tries, None) for tries in range(1, base.OUTBOX_MAX_TRIES))

    assert shortest > 4 * 3600
    assert outbox.retry_delay(1, 30.0) == 30.0  # a receiver's Retry-After, when longer, is honoured
