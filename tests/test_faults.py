"""Fault tests with real processes: a message accepted is a message answered, exactly once.

Each test runs its own Redis (so it can restart it) and its own worker and beat, with the sweeper tuned to
act within seconds instead of minutes.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from connectors import sandbox_whatsapp
from connectors.sandbox import SandboxServer
from conversations import services
from conversations.models import Call, Message
from tests.factories import ConnectionFactory, TemplateFactory
from tests.helpers import wait_until
from tests.processes import ROOT, kill_hard
from tests.stack import all_answered, answered_exactly_once, queue_sends

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


# Over tcp, config/broker.py keeps no copy of a call's message in Redis: the sweeper alone brings back what
# the killed worker held. Each answer takes a second, so that the kill finds calls in flight even on a busy
# machine (50 calls over 8 processes: about 6 s of work; the kill comes after the first 8).
@pytest.mark.sandbox_delay(1.0)
@pytest.mark.parametrize("own_stack", ["unix socket", "tcp"], indirect=True)
def test_a_worker_killed_mid_batch_loses_and_repeats_nothing(own_stack, slow_sandbox):
    ConnectionFactory(name="Sandbox", base_url=slow_sandbox.base_url, timeout_seconds=2)
    TemplateFactory(name="Support")
    first = own_stack.worker("first", pool="prefork")  # a pool of child processes, killed with its parent
    queue_sends(own_stack.env, 50)

    wait_until(lambda: Call.objects.filter(status=Call.Status.SUCCEEDED).count() >= 8, 60, "some calls to finish")
    kill_hard(first)  # kill -9, children included: its running and prefetched calls are orphaned
    interrupted = Call.objects.exclude(status=Call.Status.SUCCEEDED).count()
    own_stack.worker("second")
    own_stack.beat()

    wait_until(all_answered(50), 90, "every call to be answered")
    figures = answered_exactly_once(50)
    assert figures == {"accepted": 50, "answered": 50, "lost": 0, "duplicated": 0}
    assert interrupted > 0


@pytest.mark.parametrize("own_stack", ["unix socket", "tcp"], indirect=True)
def test_a_redis_restart_with_sends_queued_loses_nothing(own_stack, sandbox):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    TemplateFactory(name="Support")
    queue_sends(own_stack.env, 100)
    assert own_stack.queued_messages() == 100

    own_stack.restart_redis()  # no persistence: the 100 broker messages are gone
    assert own_stack.queued_messages() == 0
    own_stack.worker("after-restart")
    own_stack.beat()

    wait_until(all_answered(100), 90, "the sweeper to bring every call home")
    assert answered_exactly_once(100) == {"accepted": 100, "answered": 100, "lost": 0, "duplicated": 0}


@pytest.mark.parametrize("own_stack", ["tcp"], indirect=True)
def test_a_running_worker_carries_on_after_redis_restarts(own_stack, sandbox):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    TemplateFactory(name="Support")
    own_stack.worker("through-restart")
    queue_sends(own_stack.env, 10)
    wait_until(all_answered(10), 60, "the first ten answers")

    own_stack.restart_redis()  # the worker's broker connections break under it, and come back
    queue_sends(own_stack.env, 10)

    wait_until(all_answered(20), 90, "the ten sent after the restart")
    assert answered_exactly_once(20) == {"accepted": 20, "answered": 20, "lost": 0, "duplicated": 0}


def test_a_flaky_provider_is_retried_until_every_send_succeeds(celery_worker):
    flaky = SandboxServer(0, flaky=2)  # each request fails twice (500, then 429 with Retry-After: 1)
    flaky.start_in_thread()
    try:
        connection = ConnectionFactory(name="Sandbox", base_url=flaky.base_url, max_attempts=3)
        template = TemplateFactory(name="Support")
        for n in range(20):
            services.call_send(
                connection=connection,
                template=template,
                customer_message=f"Question {n}",
                variables={"business_name": "Acme"},
            )

        wait_until(all_answered(20), 60, "every call to succeed on a retry")
    finally:
        flaky.shutdown()
        flaky.server_close()

    assert answered_exactly_once(20)["duplicated"] == 0
    outcomes = sorted(Call.objects.order_by().values_list("attempt", "status", "http_status").distinct())
    assert outcomes == [(1, "failed", 500), (2, "failed", 429), (3, "succeeded", 200)]


def test_a_hanging_provider_ends_as_a_timeout(celery_worker, sandbox):
    connection = ConnectionFactory(
        name="Sandbox", base_url=sandbox.base_url, model="sandbox-slow-30", timeout_seconds=1, max_attempts=1
    )
    call = services.call_send(
        connection=connection,
        template=TemplateFactory(name="Support"),
        customer_message="Hello?",
        variables={"business_name": "Acme"},
    )

    wait_until(lambda: Call.objects.get(pk=call.pk).finished, 20, "the call to time out")

    call.refresh_from_db()
    assert (call.status, call.error_kind) == (Call.Status.FAILED, "timeout")
    assert call.error_message.endswith("within 1 s.")
    assert call.latency_ms >= 1000


@pytest.mark.parametrize("own_stack", ["unix socket", "tcp"], indirect=True)
def test_two_workers_share_the_work_and_do_nothing_twice(own_stack, slow_sandbox):
    ConnectionFactory(name="Sandbox", base_url=slow_sandbox.base_url)
    TemplateFactory(name="Support")
    own_stack.worker("left")
    own_stack.worker("right")

    queue_sends(own_stack.env, 40)

    wait_until(all_answered(40), 60, "every call to be answered")
    assert answered_exactly_once(40) == {"accepted": 40, "answered": 40, "lost": 0, "duplicated": 0}
    workers = {name.split("@")[0] for name in Call.objects.values_list("worker", flat=True)}
    assert workers == {"left", "right"}


BURST = """
import json, time
from conversations import whatsapp
from conversations.models import WhatsAppChannel
from conversations.whatsapp.views import simulated_payload
channel = WhatsAppChannel.objects.get()
for n, text in enumerate(["Hi", "I ordered a lamp", "Where is it?"]):
    payload = simulated_payload(channel, "15550107777", text)
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = f"wamid.BURST{n}"
    body = json.dumps(payload).encode()
    whatsapp.webhook_accept(channel=channel, raw_body=body, signature=whatsapp.sign(channel, body))
    time.sleep(0.3)
"""


@pytest.mark.parametrize("own_stack", ["tcp"], indirect=True)
def test_a_worker_killed_during_a_burst_window_answers_the_burst_once(own_stack, sandbox):
    from django.core.management import call_command

    from conversations.models import Outbound, WhatsAppChannel

    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    TemplateFactory(name="Support")
    call_command(
        "add_whatsapp_channel", "Shop", phone_number_id="106540352242922", app_secret="s", access_token="t",
        template="Support", connection="Sandbox", var=["business_name=Acme"], burst_seconds=3,
        graph_base_url=sandbox.base_url.removesuffix("/v1"), stdout=open("/dev/null", "w"),  # noqa: SIM115
    )  # fmt: skip
    first = own_stack.worker("first")
    own_stack.beat()
    # The customer's three messages, through the webhook path, published to this test's own Redis.
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", BURST], cwd=ROOT, env=own_stack.env, capture_output=True,
        text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    call = Call.objects.get()  # one call for the burst, due when the window closes
    assert call.status == Call.Status.QUEUED and call.run_after > call.queued_at

    kill_hard(first)  # inside the window: the worker held the call's message, due later
    own_stack.worker("second")

    wait_until(lambda: Outbound.objects.filter(kind="whatsapp", status="sent").exists(), 60, "the burst's answer")
    time.sleep(6)  # two sweeps and more: time for a second answer to appear, if one could

    assert Call.objects.filter(status=Call.Status.SUCCEEDED).count() == 1
    assert Message.objects.filter(role=Message.Role.ASSISTANT).count() == 1
    to_phone = sandbox_whatsapp.outbox("15550107777")
    assert len(to_phone) == 1 and "Where is it?" in to_phone[0]["body"]
    assert WhatsAppChannel.objects.get().conversations.get().messages.filter(role="user").count() == 3
