"""The worker's tasks: each takes the id of a committed row and calls the service that owns it.

Tasks are published by name through conversations/queue.py, so nothing here is imported by the modules
that ring them.
"""

from __future__ import annotations

import contextlib

from celery import shared_task

from . import delivery, outbox, queue, sweeper
from .models import Outbound


@shared_task(name=queue.EXECUTE_CALL, bind=True)
def execute_call(self, call_id: int) -> None:
    """Make one provider call. Takes only the id: the row holds everything else, and no key crosses the broker."""
    delivery.call_execute(call_id=call_id, worker=self.request.hostname or "")


@shared_task(name=queue.DELIVER_OUTBOUND)
def deliver_outbound(outbound_id: int) -> None:
    """One try at sending an outbound message (a callback, a WhatsApp reply); the row decides what follows."""
    outbox.outbound_deliver(outbound_id=outbound_id)


TEST_RUN_STEP = 0.5  # seconds between two looks at a running test run


@shared_task(name=queue.ADVANCE_TEST_RUN, ignore_result=True)
def advance_test_run(run_id: int) -> None:
    """Move a test run's cases on (next turns, verdicts), and look again shortly while it runs."""
    from .models import TestRun
    from .prompts.testing import run_advance

    run = TestRun.objects.filter(pk=run_id, status=TestRun.Status.RUNNING).first()
    if run is not None and run_advance(run).status == TestRun.Status.RUNNING:
        queue.publish(queue.ADVANCE_TEST_RUN, run_id, countdown=TEST_RUN_STEP)


@shared_task(name="conversations.sweep_calls", ignore_result=True)
def sweep_calls() -> int:
    """Run by Celery beat: queue again the calls and outbound messages a lost broker message or a dead
    worker left behind, and look again at test runs whose next look was lost."""
    return len(sweeper.calls_sweep()) + len(sweeper.outbound_sweep()) + len(sweeper.testruns_sweep())


# Messages published before the outbox existed name these tasks with a call's id: deliver them through it.
@shared_task(name="conversations.deliver_callback")
def deliver_callback(call_id: int) -> None:
    _legacy(call_id, Outbound.Kind.CALLBACK)


@shared_task(name="conversations.send_whatsapp_reply")
def send_whatsapp_reply(call_id: int) -> None:
    _legacy(call_id, Outbound.Kind.WHATSAPP)


def _legacy(call_id: int, kind: str) -> None:
    from django.db import IntegrityError, transaction

    from .models import Call, WhatsAppSend

    call = Call.objects.select_related("conversation__integration").filter(pk=call_id).first()
    if call is None:
        return
    integration = call.conversation.integration
    if kind not in outbox.outbound_kinds(call, has_callback=bool(integration and integration.callback_url)):
        return
    with contextlib.suppress(IntegrityError), transaction.atomic():  # a row already made: the outbox has it
        (row,) = outbox.outbound_create(call=call, kinds=[kind])
        # The parts an earlier send_whatsapp_reply delivered (in order) are this row's: it resumes after them.
        delivered = WhatsAppSend.objects.filter(call=call, outbound__isnull=True).exclude(message_id="")
        for part, send in enumerate(delivered.order_by("id"), start=1):
            send.outbound, send.part = row, part
            send.save(update_fields=["outbound", "part"])
