from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(name="conversations.execute_call")
def execute_call(call_id: int) -> None:
    """Make one provider call. Takes only the id: the row holds everything else, and no key crosses the broker."""
    services.call_execute(call_id=call_id)
