from __future__ import annotations

import time


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise TimeoutError(f"Timed out after {seconds} s waiting for {what}.")


def wait_for_calls(calls, seconds: float = 30.0) -> None:
    """Refresh the calls until every one has finished, or fail naming the ones that did not."""
    deadline = time.monotonic() + seconds
    pending = list(calls)
    while pending and time.monotonic() < deadline:
        for call in pending:
            call.refresh_from_db()
        pending = [call for call in pending if not call.finished]
        if pending:
            time.sleep(0.1)
    assert not pending, f"Calls still not finished after {seconds} s: {[(c.pk, c.status) for c in pending]}"


def execute_now(call_id: int):
    """Run a call in this process as if its backoff had passed: a retry is due only after it."""
    from django.utils import timezone

    from conversations import delivery
    from conversations.models import Call

    Call.objects.filter(pk=call_id, status=Call.Status.QUEUED).update(run_after=timezone.now())
    return delivery.call_execute(call_id=call_id)


def at_once(work, count: int) -> None:
    """Run `work(n)` for n in range(count), each in a thread of its own, all released together (a barrier);
    each thread gives its database connection back when done."""
    import threading

    from django.db import close_old_connections

    barrier = threading.Barrier(count)

    def run(n):
        try:
            barrier.wait()
            work(n)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
