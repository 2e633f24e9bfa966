"""A circuit breaker per connection, shared by every worker through Redis.

A connection whose provider keeps failing (timeouts, 5xx, 429, network errors) should not make every
customer wait for its timeout before the fallback answers. After CIRCUIT_FAILURES such failures in a row,
the circuit opens: for CIRCUIT_COOLDOWN_SECONDS calls on it are not sent, and go straight to its fallback.
Then one call is let through as a probe: its success closes the circuit, its failure opens it again.

Only a connection with a fallback is ever skipped: with nowhere else to go, trying is better than not.
A Redis that cannot be reached never stops a call (the circuit reads as closed).

State, per connection: `failures` (a counter, reset by any success), `open_until` (a Unix time) and
`probe` (held by the one call let through after the cool-down). Decisions are single Redis commands or a
Lua script, so two workers never both take the probe.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from django.conf import settings

from .errors import TRANSIENT_KINDS
from .ratelimit import client

LAST_ERRORS = 5
logger = logging.getLogger(__name__)

# Returns 1 if the call may go (closed, or this call took the probe), 0 if it must skip.
_ALLOW = """
local open_until = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
if open_until == 0 then return 1 end
if now < open_until then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""


@dataclass(frozen=True)
class State:
    name: str  # closed, open, probing
    failures: int
    open_until: float | None

    @property
    def label(self) -> str:
        if self.name == "open":
            return f"Skipped until {time.strftime('%H:%M:%S', time.localtime(self.open_until))}"
        if self.name == "probing":
            return "Trying again (one call)"
        return "Healthy" if not self.failures else f"Healthy ({self.failures} failed in a row)"


def _keys(connection_id: int) -> tuple[str, str, str, str]:
    base = f"sb:circuit:{connection_id}"
    return f"{base}:open_until", f"{base}:probe", f"{base}:failures", f"{base}:errors"


def allow(connection) -> bool:
    """Whether a call may be sent on this connection now (always, for one without a fallback)."""
    if not connection.fallback_id:
        return True
    open_key, probe_key, _, _ = _keys(connection.pk)
    try:
        return bool(
            client().eval(_ALLOW, 2, open_key, probe_key, f"{time.time():.3f}", settings.CIRCUIT_COOLDOWN_SECONDS)
        )
    except redis.RedisError:
        logger.warning("circuit state unreadable for connection %s; sending anyway", connection.pk, exc_info=True)
        return True


def record_success(connection) -> None:
    """A call on this connection was answered: its circuit closes."""
    if connection.fallback_id:
        try:
            client().delete(*_keys(connection.pk)[:3])
        except redis.RedisError:
            logger.warning("circuit state not recorded for connection %s", connection.pk, exc_info=True)


def record_failure(connection, error) -> None:
    """A call on this connection failed: kept among its last errors (for the Connections page), and, when
    a retry could have helped, counted towards opening its circuit."""
    open_key, probe_key, failures_key, errors_key = _keys(connection.pk)
    try:
        pipe = client().pipeline()
        pipe.lpush(errors_key, json.dumps({"at": time.time(), "error": str(error)[:300]}))
        pipe.ltrim(errors_key, 0, LAST_ERRORS - 1)
        pipe.expire(errors_key, 7 * 86400)
        if connection.fallback_id and error.kind in TRANSIENT_KINDS:
            pipe.incr(failures_key)
            pipe.expire(failures_key, settings.CIRCUIT_COOLDOWN_SECONDS * 10)
        failures = pipe.execute()[-2] if connection.fallback_id and error.kind in TRANSIENT_KINDS else 0
        if failures >= settings.CIRCUIT_FAILURES:
            client().set(open_key, f"{time.time() + settings.CIRCUIT_COOLDOWN_SECONDS:.3f}")
            client().delete(probe_key)
            logger.warning(
                "connection %s failed %s times in a row: skipped for %s s", connection, failures,
                settings.CIRCUIT_COOLDOWN_SECONDS,
            )  # fmt: skip
    except redis.RedisError:
        logger.warning("circuit state not recorded for connection %s", connection.pk, exc_info=True)


def last_errors(connection) -> list[dict]:
    """The connection's latest failures, newest first: {"at": datetime, "error": text}."""
    try:
        raw = client().lrange(_keys(connection.pk)[3], 0, LAST_ERRORS - 1)
    except redis.RedisError:
        return []
    errors = []
    for item in raw:
        entry = json.loads(item)
        errors.append({"at": datetime.fromtimestamp(entry["at"], tz=UTC), "error": entry["error"]})
    return errors


def state(connection) -> State:
    open_key, probe_key, failures_key, _ = _keys(connection.pk)
    try:
        open_until, probing, failures = client().mget(open_key, probe_key, failures_key)
    except redis.RedisError:
        return State("closed", 0, None)
    failures = int(failures or 0)
    if open_until and float(open_until) > time.time():
        return State("open", failures, float(open_until))
    if open_until:  # cooled down: the next call (or the one holding the probe) tries again
        return State("probing", failures, float(open_until))
    return State("closed", failures, None)


def reset(connection) -> None:
    client().delete(*_keys(connection.pk))
