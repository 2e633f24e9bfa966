"""Waking an API request that waits for its reply, instead of it polling the database.

The database stays the truth. A waiter looks at its call, then blocks on a Redis list named after the
customer message for at most WAKE_CHECK seconds, then looks again. The worker rings that list once an
attempt's outcome is committed (every attempt of the message rings the same list: retries and fallback hops
wake the waiter too, which then finds the newest attempt still running and waits again). A ring that comes
between the waiter's look and its block is kept in the list, so it is not missed; a ring lost with Redis
costs one WAKE_CHECK, never a reply.

A ring for the message's last attempt (answered, or failed for good) carries that attempt's row as committed,
so the waiter answers without reading it back: one statement fewer on every relayed request. Only the
columns the worker holds travel, never the request body or the provider's raw response (the row is loaded
with those deferred: read from the database if a caller asks for them); a ring nobody takes expires with
RING_TTL.
"""

from __future__ import annotations

import json
import logging
import time

import redis
from django.core.exceptions import ValidationError

from connectors.ratelimit import client

from .models import Call
from .store import sql

logger = logging.getLogger(__name__)

WAKE_CHECK = 0.25  # seconds: the longest a lost ring can delay a reply
RING_TTL = 60  # seconds a ring nobody took is kept
BARE = b"1"  # a ring without the row: look in the database
LEFT_IN_THE_DATABASE = frozenset({"request", "response_body"})  # large, and no waiter answers with them


def _key(message_id: int) -> str:
    return f"sb:answered:{message_id}"


def ring(message_id: int, last: Call | None = None) -> None:
    """Wake whoever waits for this customer message's reply (after the outcome is committed). `last`: the
    message's final attempt as committed, which the waiter then answers with."""
    try:
        value = _packed(last) if last is not None else BARE
    except (TypeError, ValueError):  # a column of a type a ring cannot carry: the waiter reads the row instead
        logger.warning("call %s's row cannot travel with its ring; ringing without it", last.pk, exc_info=True)
        value = BARE
    try:
        pipe = client().pipeline(transaction=False)
        pipe.rpush(_key(message_id), value)
        pipe.expire(_key(message_id), RING_TTL)
        pipe.execute()
    except redis.RedisError:
        logger.debug("could not ring for message %s; its waiter looks again within %s s", message_id, WAKE_CHECK)


def wait(call: Call, seconds: float) -> Call | None:
    """Block until a ring for `call`'s message or `seconds` (at most WAKE_CHECK) have passed. Returns the
    message's final attempt if the ring carried it, else None (look in the database)."""
    seconds = max(0.0, min(seconds, WAKE_CHECK))
    if seconds <= 0:
        return None
    try:
        rung = client().blpop([_key(call.message_id)], timeout=seconds)
    except redis.RedisError:
        time.sleep(min(seconds, 0.02))  # Redis away: poll the database as before
        return None
    if rung is None or rung[1] == BARE:
        return None
    last = _unpacked(rung[1], call.message_id)
    if last is None or not _answers(last, call):
        return None
    return last


def _answers(last: Call, call: Call) -> bool:
    """Whether a ring's row is an attempt at `call`'s message, not a leftover from a message that had the same
    id (a database restored or recreated within RING_TTL): same message and conversation, queued no earlier.
    A retry queued by a worker whose clock is behind fails the last test: the waiter then reads the row."""
    return (last.message_id, last.conversation_id) == (call.message_id, call.conversation_id) and (
        call.queued_at is None or (last.queued_at is not None and last.queued_at >= call.queued_at)
    )


def _packed(call: Call) -> str:
    """The committed columns the worker holds, as JSON."""
    return sql.dumps(sql.row_json(call, LEFT_IN_THE_DATABASE))


def _unpacked(packed: bytes, message_id: int) -> Call | None:
    """The attempt a ring carried, as if loaded from the database (columns left out are deferred), or None
    for a ring this code cannot read (an older worker's, say): the waiter then looks in the database."""
    try:
        call = sql.row_instance(Call, json.loads(packed))
    except (ValueError, TypeError, LookupError, ValidationError) as error:
        logger.warning("an unreadable ring for message %s (%s); looking in the database", message_id, error)
        return None
    return call if call.finished else None
