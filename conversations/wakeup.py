"""Waking an API request that waits for its reply, instead of it polling the database.

The database stays the truth. A waiter looks at its call, then blocks on a Redis list named after the
customer message for at most WAKE_CHECK seconds, then looks again. The worker rings that list once an
attempt's outcome is committed (every attempt of the message rings the same list: retries and fallback hops
wake the waiter too, which then finds the newest attempt still running and waits again). A ring that comes
between the waiter's look and its block is kept in the list, so it is not missed; a ring lost with Redis
costs one WAKE_CHECK, never a reply.
"""

from __future__ import annotations

import logging
import time

import redis

from connectors.ratelimit import client

logger = logging.getLogger(__name__)

WAKE_CHECK = 0.25  # seconds: the longest a lost ring can delay a reply
RING_TTL = 60  # seconds a ring nobody took is kept


def _key(message_id: int) -> str:
    return f"sb:answered:{message_id}"


def ring(message_id: int) -> None:
    """Wake whoever waits for this customer message's reply (after the outcome is committed)."""
    try:
        pipe = client().pipeline(transaction=False)
        pipe.rpush(_key(message_id), 1)
        pipe.expire(_key(message_id), RING_TTL)
        pipe.execute()
    except redis.RedisError:
        logger.debug("could not ring for message %s; its waiter looks again within %s s", message_id, WAKE_CHECK)


def wait(message_id: int, seconds: float) -> None:
    """Block until a ring for this message or `seconds` (at most WAKE_CHECK) have passed."""
    seconds = max(0.0, min(seconds, WAKE_CHECK))
    if seconds <= 0:
        return
    try:
        client().blpop([_key(message_id)], timeout=seconds)
    except redis.RedisError:
        time.sleep(min(seconds, 0.02))  # Redis away: poll the database as before
