"""One try at sending something out, and its record kept through a database blink.

Shared by the outbox and the modules that make its tries (callbacks, the WhatsApp Graph API), so that
neither imports the other back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import close_old_connections, connection

from config.errors import service_unavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class TryResult:
    """How one try went: sent, or why not, whether another try can help, and how soon the receiver asked."""

    sent: bool
    error: str = ""
    transient: bool = False
    retry_after: float | None = None


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """A receiver's Retry-After in seconds (within an hour), or None."""
    try:
        seconds = float((headers or {}).get("Retry-After", ""))
    except ValueError:
        return None
    return min(max(0.0, seconds), 3600.0) if math.isfinite(seconds) else None


def durably(write: Callable[[], T]) -> T:
    """Run a database write, waiting for the database if it is briefly away (a restart, a failover).

    For records of something already done outside (a provider's reply, a callback delivered, a WhatsApp
    message sent): losing one would mean doing it again. Gives up after OUTBOX_RECORD_PATIENCE_SECONDS
    and raises; the sweeper counts that patience in before it hands a row to another worker.
    """
    deadline = time.monotonic() + settings.OUTBOX_RECORD_PATIENCE_SECONDS
    pause = 0.1
    while True:
        try:
            return write()
        except Exception as error:
            # Inside a caller's transaction nothing can be waited for: that transaction is lost anyway.
            if not service_unavailable(error) or time.monotonic() > deadline or connection.in_atomic_block:
                raise
            logger.warning("database unavailable while recording (%s); trying again in %.1f s", error, pause)
        connection.close()  # a broken connection is not reused; the next try opens (or borrows) a new one
        time.sleep(pause)
        pause = min(pause * 2, 2.0)
        close_old_connections()
