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
