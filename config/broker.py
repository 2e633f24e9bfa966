"""Celery's Redis transport, with one Redis client per channel instead of one per broker operation.

kombu's Redis channel builds a new `redis.Redis` client for every publish, every acknowledgement and
every step of its unacked-message bookkeeping (`Channel.conn_or_acquire`), and redis-py 8 fills ~170
response callbacks into a case-insensitive dict for each new client (redis/redis-py#3624). That was the
largest single cost per message in the worker and in the web process that queues calls: with one client
per channel, Celery moves 955 no-op tasks/s where it moved 822, and the pipeline 404 sends/s where it
made 370 (`python -m bench --only pipeline`, 2 cores).

Sharing is safe: a `redis.Redis` client takes a connection from the channel's pool for each command, and
pipelines are objects of their own. The client is made again whenever kombu replaces the pool (after a
fork, after a connection error). Used for redis:// broker URLs only (settings.broker_transport names
it); rediss://, redis+socket:// and sentinel:// keep kombu's own transport.
"""

from __future__ import annotations

from kombu.transport import redis


class Channel(redis.Channel):
    _shared_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the event loop's own client, made once by kombu already
            return super()._create_client(asynchronous=True)
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
        return client


class Transport(redis.Transport):
    Channel = Channel
