"""Celery's Redis transport with two changes: one Redis client per channel, and no Redis bookkeeping for the
messages of tasks whose work the database already keeps track of.

One client per channel. kombu's Redis channel builds a new `redis.Redis` client for every publish, every
acknowledgement and every step of its unacked-message bookkeeping (`Channel.conn_or_acquire`), and redis-py 8
fills ~170 response callbacks into a case-insensitive dict for each new client (redis/redis-py#3624). With one
client per channel, Celery moves 955 no-op tasks/s where it moved 822 (`python -m bench --only pipeline`,
2 cores). Sharing is safe: a `redis.Redis` client takes a connection from the channel's pool for each
command, and pipelines are objects of their own. The client is made again whenever kombu replaces the pool
(after a fork, after a connection error).

Untracked tasks. Until a message is acknowledged, kombu keeps a copy of it in two Redis keys (a pipeline when
it arrives, another when it is acknowledged), so that another worker can put it back in the queue an hour
(the visibility timeout) after its worker died. A provider call does not need that copy: the call row is its
record, and the sweeper queues a call again when its message is lost (conversations/sweeper.py: within
minutes, or CALL_QUEUED_LOST_SECONDS through a queue that never empties).
The messages of the tasks named in the transport option `untracked_tasks` are therefore kept in the worker's
memory only: acknowledging one costs nothing, a warm shutdown or a requeue still puts it back in the queue,
and a worker killed outright loses it to the sweeper. That takes a fifth of the worker's CPU per call.

Used for redis:// broker URLs only (settings.broker_transport names it); rediss://, redis+socket:// and
sentinel:// keep kombu's own transport, which tracks every message.
"""

from __future__ import annotations

import logging

from kombu.transport import redis, virtual
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._untracked: set[str] = set()  # delivery tags held in memory only

    def append(self, message, delivery_tag):
        if message.headers.get("task") in self.channel.untracked_tasks:
            self._untracked.add(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)

    def ack(self, delivery_tag):
        if delivery_tag in self._untracked:
            self._untracked.discard(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)
        else:
            super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if delivery_tag in self._untracked:
            virtual.QoS.reject(self, delivery_tag, requeue=requeue)  # requeues through Channel._restore
            self._untracked.discard(delivery_tag)
        else:
            super().reject(delivery_tag, requeue=requeue)

    def restore_unacked(self, client=None):
        """At shutdown: put every unacknowledged message back, from memory or from Redis.

        Returns the untracked messages that could not be put back, with their errors: kombu logs them and
        writes them to a file (the calls among them are the sweeper's anyway).
        """
        unrestored = []
        for tag in [tag for tag in self._delivered if tag in self._untracked]:
            message = self._delivered.pop(tag)
            try:
                self.channel._restore(message)
            except Exception as error:  # noqa: BLE001 - Redis gone: keep going, report them all
                unrestored.append((error, message))
        self._untracked.clear()
        try:
            super().restore_unacked(client)
        except Exception:  # noqa: BLE001 - see below
            # Closing after Redis went away: kombu builds a new pool for its copies in Redis, from a
            # connection that is already gone (AttributeError), and the worker would stop with "Unrecoverable
            # error". Those copies died with Redis anyway; keep going, so the worker reconnects.
            logger.warning("could not put unacknowledged messages back in Redis; it is away", exc_info=True)
        return unrestored


class Channel(redis.Channel):
    QoS = QoS
    untracked_tasks: frozenset[str] | list[str] = frozenset()
    from_transport_options = (*redis.Channel.from_transport_options, "untracked_tasks")
    _shared_client = None

    def _create_client(self, asynchronous=False):
        if asynchronous:  # the event loop's own client, made once by kombu already
            return super()._create_client(asynchronous=True)
        if self.connection is None or self.connection.client is None:
            # A channel closed when Redis went away, asked to acknowledge a message it delivered before.
            # kombu would build a pool from the missing connection (AttributeError) and the worker would stop
            # with "Unrecoverable error"; as a connection error it is logged, and the worker reconnects.
            raise RedisConnectionError("The broker connection of this channel is closed.")
        client = self._shared_client
        if client is None or client.connection_pool is not self.pool:
            client = self._shared_client = super()._create_client()
        return client

    def _restore(self, message, leftmost=False):
        if message.delivery_tag not in self.qos._untracked:
            return super()._restore(message, leftmost)
        # The message itself, held in memory, goes back the way kombu puts back its copy from Redis (marked
        # redelivered, to its queue and priority).
        delivery = message.delivery_info
        with self.conn_or_acquire() as client:
            self._do_restore_message(message._raw, delivery["exchange"], delivery["routing_key"], client, leftmost)


class Transport(redis.Transport):
    Channel = Channel
