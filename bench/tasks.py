"""A task that does nothing but count itself: what Celery and the broker cost per message, with no call made.

Loaded only into the benchmark's workers (`celery worker --include bench.tasks`), never into the app's.
"""

from __future__ import annotations

from celery import shared_task

from connectors import ratelimit

COUNTER = "sb:bench:noop"


@shared_task(name="bench.noop")
def noop() -> None:
    ratelimit.client().incr(COUNTER)
