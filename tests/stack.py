"""Real processes for the fault and delivery tests: a private Redis per test (so a test can restart it), the
workers and beat it starts, a slow sandbox, and the figures the README reports.
"""

from __future__ import annotations

import pytest
import redis

from bench.harness import free_port
from connectors.sandbox import SandboxServer
from conversations.models import Call, Message
from tests.processes import run_send_test, start_beat, start_redis, start_worker, stop

FAST_SWEEPER = {
    "CALL_SWEEP_INTERVAL_SECONDS": "1",
    "CALL_QUEUED_STALE_SECONDS": "3",
    "CALL_RUNNING_GRACE_SECONDS": "1",
    "OUTBOX_RECORD_PATIENCE_SECONDS": "3",
}


@pytest.fixture(params=["unix socket"])
def own_stack(request, subprocess_env, tmp_path):
    """A private Redis plus the environment for workers and beat on it; stops whatever a test started.

    Reached over a unix socket (kombu's own Redis transport, as `make run` uses it), or with the
    parameter "tcp" over redis:// (config/broker.py's transport, as production uses it).
    """
    socket_path = tmp_path / "redis.sock"
    port = free_port() if request.param == "tcp" else 0
    started = {"redis": start_redis(socket_path, port), "others": []}
    url = f"redis://127.0.0.1:{port}/0" if port else f"redis+socket://{socket_path}"
    env = {**subprocess_env, **FAST_SWEEPER, "CELERY_BROKER_URL": url}

    class Stack:
        def __init__(self):
            self.env, self.socket_path, self.tmp = env, socket_path, tmp_path

        def worker(self, name, pool="threads", concurrency=8):
            process = start_worker(env, tmp_path / f"{name}.log", name=name, pool=pool, concurrency=concurrency)
            started["others"].append(process)
            return process

        def beat(self):
            process = start_beat(env, tmp_path)
            started["others"].append(process)
            return process

        def restart_redis(self):
            kill_hard_plain(started["redis"])
            started["redis"] = start_redis(socket_path, port)

        def redis(self):
            return redis.Redis(unix_socket_path=str(socket_path))

        def queued_messages(self):
            return self.redis().llen("celery")

    yield Stack()
    for process in started["others"]:
        stop(process)
    stop(started["redis"])


def kill_hard_plain(process):
    process.kill()
    process.wait(10)


@pytest.fixture
def slow_sandbox(request):
    """A sandbox answering after 0.2 s (or the test's `sandbox_delay` mark), so that calls are in flight."""
    marker = request.node.get_closest_marker("sandbox_delay")
    server = SandboxServer(0, delay=marker.args[0] if marker else 0.2)
    server.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


def queue_sends(env, count):
    result = run_send_test(
        env, "--var", "business_name=Acme", "--message", "Where is my parcel?", "--repeat", str(count)
    )
    assert result.returncode == 0, result.stderr


def answered_exactly_once(expected: int) -> dict[str, int]:
    """The figures the README reports: accepted, answered, lost and duplicated customer messages."""
    accepted = Message.objects.filter(role=Message.Role.USER).count()
    succeeded_per_message = Call.objects.filter(status=Call.Status.SUCCEEDED).values_list("message_id", flat=True)
    replies = Message.objects.filter(role=Message.Role.ASSISTANT).count()
    answered = len(set(succeeded_per_message))
    figures = {
        "accepted": accepted,
        "answered": answered,
        "lost": accepted - answered,
        "duplicated": (len(succeeded_per_message) - answered) + (replies - answered),
    }
    print(f"figures: {figures}")
    assert accepted == expected
    return figures


def all_answered(expected):
    return lambda: Call.objects.filter(status=Call.Status.SUCCEEDED).count() >= expected
