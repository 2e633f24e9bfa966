"""config/broker.py: which broker URLs get the shared-client transport, and that it shares and recovers."""

from __future__ import annotations

import pytest
from kombu import Connection

from bench.harness import free_port
from config.settings.base import broker_transport
from tests.processes import start_redis, stop


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://127.0.0.1:6379/0", "config.broker:Transport"),
        ("redis://:secret@redis.internal:6379/2", "config.broker:Transport"),
        ("rediss://redis.internal:6380/0", None),  # kombu turns TLS on only under its own transport name
        ("redis+socket:///run/redis.sock", None),
        ("sentinel://sentinel-1:26379", None),
    ],
)
def test_only_plain_redis_urls_get_the_shared_client_transport(url, transport):
    assert broker_transport(url) == transport


@pytest.fixture
def tcp_redis(tmp_path):
    port = free_port()
    process = start_redis(tmp_path / "redis.sock", port)
    yield f"redis://127.0.0.1:{port}/0"
    stop(process)


def test_a_channel_keeps_one_client_remakes_it_with_its_pool_and_still_carries_messages(tcp_redis):
    with Connection(tcp_redis, transport=broker_transport(tcp_redis)) as connection:
        channel = connection.default_channel
        assert type(channel).__module__ == "config.broker"
        first = channel._create_client()
        assert channel._create_client() is first  # not a new client per operation

        channel._disconnect_pools()  # what kombu does after a fork or a connection error
        again = channel._create_client()
        assert again is not first and again.connection_pool is channel.pool

        queue = connection.SimpleQueue("broker-test")
        queue.put({"call": 42})
        message = queue.get(timeout=5)
        message.ack()
        assert message.payload == {"call": 42}
        queue.close()


def _connection(url):
    return Connection(url, transport=broker_transport(url), transport_options={"untracked_tasks": ["calls.run"]})


def _publish(connection, queue_name, task):
    queue = connection.SimpleQueue(queue_name)
    queue.put({"call": 7}, headers={"task": task})
    return queue


def _waiting(connection, queue_name) -> int:
    return connection.default_channel.client.llen(queue_name)  # kombu's qsize() fails on an empty Redis list


def _kept_in_redis(connection) -> int:
    """Messages kombu keeps a copy of until they are acknowledged."""
    channel = connection.default_channel
    return channel.client.hlen(channel.unacked_key)


@pytest.mark.parametrize(("task", "copies_while_running"), [("calls.run", 0), ("callbacks.deliver", 1)])
def test_only_tracked_tasks_leave_a_copy_in_redis_until_acknowledged(tcp_redis, task, copies_while_running):
    with _connection(tcp_redis) as connection:
        queue = _publish(connection, "untracked-test", task)
        message = queue.get(timeout=5)
        assert _kept_in_redis(connection) == copies_while_running
        message.ack()
        assert _kept_in_redis(connection) == 0
        assert _waiting(connection, "untracked-test") == 0
        queue.close()


def test_an_untracked_message_rejected_with_requeue_goes_back_to_the_queue(tcp_redis):
    with _connection(tcp_redis) as connection:
        queue = _publish(connection, "requeue-test", "calls.run")
        queue.get(timeout=5).reject(requeue=True)
        again = queue.get(timeout=5)
        assert again.payload == {"call": 7} and again.headers["task"] == "calls.run"
        assert again.delivery_info["redelivered"] is True  # marked as kombu marks a message it restores
        again.ack()
        queue.close()


def test_a_warm_shutdown_puts_untracked_and_tracked_messages_back(tcp_redis):
    with _connection(tcp_redis) as connection:
        untracked = _publish(connection, "shutdown-untracked", "calls.run")
        tracked = _publish(connection, "shutdown-tracked", "callbacks.deliver")
        untracked.get(timeout=5), tracked.get(timeout=5)  # received, never acknowledged
        assert _waiting(connection, "shutdown-untracked") == _waiting(connection, "shutdown-tracked") == 0
    # The channel closed with both unacknowledged, as a worker's does when it stops: both are queued again.
    with _connection(tcp_redis) as connection:
        for name in ("shutdown-untracked", "shutdown-tracked"):
            queue = connection.SimpleQueue(name)
            assert queue.get(timeout=5).payload == {"call": 7}
            queue.close()
        assert _kept_in_redis(connection) == 1  # the tracked one's copy, until this get is acknowledged
