from __future__ import annotations

from celery import shared_task

from . import callbacks, delivery, sweeper, whatsapp


@shared_task(name="conversations.execute_call", bind=True)
def execute_call(self, call_id: int) -> None:
    """Make one provider call. Takes only the id: the row holds everything else, and no key crosses the broker."""
    delivery.call_execute(call_id=call_id, worker=self.request.hostname or "")


@shared_task(name="conversations.sweep_calls", ignore_result=True)
def sweep_calls() -> int:
    """Run by Celery beat: queue again the calls a lost broker message or a dead worker left behind."""
    return len(sweeper.calls_sweep())


@shared_task(
    name="conversations.deliver_callback",
    bind=True,
    autoretry_for=(callbacks.CallbackFailed,),
    retry_backoff=2,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=6,
)
def deliver_callback(self, call_id: int) -> None:
    """POST a finished call to its integration's callback URL; network errors, 429 and 5xx are retried."""
    callbacks.callback_deliver(call_id=call_id, attempt=self.request.retries + 1)


@shared_task(
    name="conversations.send_whatsapp_reply",
    bind=True,
    autoretry_for=(whatsapp.SendFailed,),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=5,
)
def send_whatsapp_reply(self, call_id: int) -> None:
    """Send a finished call's reply to the WhatsApp customer; throughput limits and 5xx are retried."""
    whatsapp.reply_send(call_id=call_id, attempt=self.request.retries + 1)
