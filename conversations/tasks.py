from __future__ import annotations

from celery import shared_task

from . import delivery


@shared_task(name="conversations.execute_call")
def execute_call(call_id: int) -> None:
    """Make one provider call. Takes only the id: the row holds everything else, and no key crosses the broker."""
    delivery.call_execute(call_id=call_id)


@shared_task(name="conversations.sweep_calls", ignore_result=True)
def sweep_calls() -> int:
    """Run by Celery beat: queue again the calls a lost broker message or a dead worker left behind."""
    return len(delivery.calls_sweep())
