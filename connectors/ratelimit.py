"""Per-connection limits that hold across every worker and machine: requests per second and calls at once.

Both live in Redis, in small Lua scripts so each decision is one atomic round trip, timed by Redis's own
clock so machines with skewed clocks agree. Requests per second is a reservation schedule (GCRA): each call
reserves the next free slot and waits for it, so the rate holds without bursts. Calls at once is a counting
semaphore whose holders expire, so a worker that dies cannot hold a slot for ever.
"""

from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from functools import cache

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

# Reserve the next slot unless it is more than ARGV[2] ms away; return the wait in ms (negative: not reserved).
_RESERVE = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + now_us / 1000
local interval, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - now
if wait > max_wait then return -math.ceil(wait) end
redis.call('SET', KEYS[1], tostring(tat + interval), 'PX', math.ceil(wait + interval) + 1000)
return math.ceil(wait)
"""
# Take a place if fewer than ARGV[1] unexpired holders; a place expires after ARGV[2] ms.
_ACQUIRE = """
local now_s, now_us = unpack(redis.call('TIME'))
local now = now_s * 1000 + now_us / 1000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
return 1
"""


class Deferred(Exception):
    """The call must wait longer than a worker should hold it: queue it again after `seconds`."""

    def __init__(self, seconds: float, reason: str):
        super().__init__(reason)
        self.seconds = seconds


@cache
def redis_at(url: str) -> redis.Redis:
    """One client per Redis URL (a `redis+socket://` broker URL included), shared by the threads of a process."""
    if url.startswith("redis+socket://"):
        url = "unix://" + url.removeprefix("redis+socket://")
    # Timeouts: a Redis that hangs must cost a call a few seconds, not its worker thread for good. No command is
    # sent twice: one whose answer was lost may have been applied (a rate-limit slot taken, a doorbell rung),
    # and a call rung claimed twice would reach the provider twice (conversations/store/preclaimed.py).
    return redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))


def client() -> redis.Redis:
    return redis_at(settings.RATE_LIMIT_REDIS_URL)


def reserve(connection_id: int, per_second: float, max_wait: float) -> float:
    """Seconds to wait for this call's slot (reserved), or Deferred if the next slot is further than max_wait."""
    waited = client().eval(_RESERVE, 1, f"sb:rate:{connection_id}", 1000.0 / per_second, max_wait * 1000)
    if waited < 0:
        raise Deferred(-waited / 1000, f"rate limit of {per_second:g}/s: next slot in {-waited / 1000:.1f} s")
    return waited / 1000


def acquire(connection_id: int, limit: int, hold_seconds: float) -> str | None:
    """A place among `limit` concurrent calls (its token), or None when all are taken."""
    token = uuid.uuid4().hex
    taken = client().eval(_ACQUIRE, 1, f"sb:concurrency:{connection_id}", limit, int(hold_seconds * 1000), token)
    return token if taken else None


def release(connection_id: int, token: str) -> None:
    client().zrem(f"sb:concurrency:{connection_id}", token)


@contextmanager
def limited(connection, *, max_wait: float | None = None):
    """Hold the connection's limits around one provider call; raises Deferred when the call should wait in the queue."""
    max_wait = settings.RATE_LIMIT_MAX_WAIT_SECONDS if max_wait is None else max_wait
    token = None
    if connection.max_concurrent:
        hold = connection.timeout_seconds + 30  # outlives the call, expires if the worker dies
        token = acquire(connection.pk, connection.max_concurrent, hold)
        if token is None:
            raise Deferred(0.5, f"{connection.max_concurrent} calls already in flight on {connection.name}")
    try:
        if connection.rate_limit_per_second:
            wait = reserve(connection.pk, connection.rate_limit_per_second, max_wait)
            if wait > 0:
                threading.Event().wait(wait)
        yield
    finally:
        if token:
            release(connection.pk, token)
