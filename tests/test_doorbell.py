"""conversations/doorbell.py with real processes: a call due now reaches a listening worker through its
Redis list, never more at once than the worker's pool runs, and a doorbell outlives a worker that died."""

from __future__ import annotations

import pytest

from conversations import doorbell
from conversations.models import Call
from tests.factories import ConnectionFactory, TemplateFactory
from tests.helpers import wait_until
from tests.processes import kill_hard, stop
from tests.stack import all_answered, answered_exactly_once, queue_sends

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

EXACTLY_ONCE = {"accepted": 10, "answered": 10, "lost": 0, "duplicated": 0}


@pytest.fixture
def support(sandbox):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    TemplateFactory(name="Support")


def through_celery(worker) -> int:
    """Calls the worker took as Celery messages (it logs "Task conversations.execute_call[id] received")."""
    lines = worker.log_path.read_text().splitlines()
    return sum("Task conversations.execute_call[" in line and line.endswith("] received") for line in lines)


def listening(stack) -> bool:
    return bool(stack.redis().exists(doorbell.LISTENING))


@pytest.mark.parametrize("own_stack", ["unix socket", "tcp"], indirect=True)
def test_with_a_worker_listening_calls_skip_celerys_queue(own_stack, support):
    worker = own_stack.worker("listening")
    wait_until(lambda: listening(own_stack), 10, "the worker to listen")

    queue_sends(own_stack.env, 10)

    wait_until(all_answered(10), 60, "every call to be answered")
    assert answered_exactly_once(10) == EXACTLY_ONCE
    assert through_celery(worker) == 0
    assert own_stack.redis().llen(doorbell.CALLS) == 0


def test_before_any_worker_listens_calls_wait_in_celerys_queue(own_stack, support):
    queue_sends(own_stack.env, 10)
    assert own_stack.queued_messages() == 10
    assert own_stack.redis().llen(doorbell.CALLS) == 0

    worker = own_stack.worker("late")

    wait_until(all_answered(10), 60, "the worker to take Celery's messages")
    assert answered_exactly_once(10) == EXACTLY_ONCE
    assert through_celery(worker) == 10


def test_a_worker_with_the_doorbell_off_does_not_listen(own_stack, support):
    own_stack.env["CALL_DOORBELL"] = "false"
    worker = own_stack.worker("celery-only")

    queue_sends(own_stack.env, 10)

    wait_until(all_answered(10), 60, "every call to be answered")
    assert not listening(own_stack)
    assert through_celery(worker) == 10


@pytest.mark.sandbox_delay(3.0)  # long enough that the first two are still running when the list is counted
def test_a_worker_takes_no_more_calls_than_its_pool_runs(own_stack, slow_sandbox):
    ConnectionFactory(name="Sandbox", base_url=slow_sandbox.base_url)
    TemplateFactory(name="Support")
    own_stack.worker("small", concurrency=2)
    wait_until(lambda: listening(own_stack), 10, "the worker to listen")

    queue_sends(own_stack.env, 6)

    wait_until(lambda: Call.objects.filter(status=Call.Status.RUNNING).count() == 2, 10, "two calls to run")
    # The other four wait in Redis, where any worker can take them, not in this worker's memory.
    assert own_stack.redis().llen(doorbell.CALLS) == 4
    wait_until(all_answered(6), 30, "every call to be answered")


@pytest.mark.sandbox_delay(1.0)
def test_a_worker_stopping_finishes_what_it_took_and_leaves_the_rest_for_the_next(own_stack, slow_sandbox):
    ConnectionFactory(name="Sandbox", base_url=slow_sandbox.base_url)
    TemplateFactory(name="Support")
    first = own_stack.worker("first", concurrency=2)
    wait_until(lambda: listening(own_stack), 10, "the worker to listen")
    queue_sends(own_stack.env, 6)
    wait_until(lambda: Call.objects.filter(status=Call.Status.RUNNING).count() == 2, 10, "two calls to run")

    stop(first)  # SIGTERM, as a deploy stops a worker: a warm shutdown

    assert Call.objects.filter(status=Call.Status.SUCCEEDED).count() == 2  # it finished the two it had taken
    assert own_stack.redis().llen(doorbell.CALLS) == 4  # and left the others where the next worker finds them
    assert not listening(own_stack)  # web processes ring through Celery until a worker listens again
    own_stack.worker("second")
    wait_until(all_answered(6), 30, "the next worker to take the rest")  # without the sweeper: no beat runs


def test_a_prefork_worker_takes_calls_through_celery_only(own_stack, support):
    worker = own_stack.worker("prefork", pool="prefork")

    queue_sends(own_stack.env, 10)

    wait_until(all_answered(10), 60, "every call to be answered")
    assert not listening(own_stack)
    assert through_celery(worker) == 10


def test_doorbells_a_dead_worker_never_took_wait_for_the_next(own_stack, support):
    first = own_stack.worker("first")
    wait_until(lambda: listening(own_stack), 10, "the worker to listen")
    kill_hard(first)

    queue_sends(own_stack.env, 10)  # the key still says a worker listens (for LISTENING_TTL)
    assert own_stack.redis().llen(doorbell.CALLS) == 10

    own_stack.worker("second")

    wait_until(all_answered(10), 60, "the next worker to take them")
    assert answered_exactly_once(10) == EXACTLY_ONCE


def test_something_not_a_call_id_on_the_list_is_dropped_and_listening_goes_on(own_stack, support):
    worker = own_stack.worker("listening")
    wait_until(lambda: listening(own_stack), 10, "the worker to listen")
    own_stack.redis().rpush(doorbell.CALLS, "not-a-call")

    queue_sends(own_stack.env, 10)

    wait_until(all_answered(10), 60, "every call to be answered")
    assert "call doorbell: dropped b'not-a-call', not a call id" in worker.log_path.read_text()


@pytest.mark.parametrize(
    ("url", "on"),
    [("redis://127.0.0.1:6379/0", True), ("redis+socket:///run/redis.sock", True), ("amqp://guest@rabbit//", False)],
)
def test_the_list_is_used_only_with_a_redis_broker(settings, url, on):
    settings.CELERY_BROKER_URL = url
    assert doorbell.enabled() is on
    settings.CALL_DOORBELL = False
    assert doorbell.enabled() is False
