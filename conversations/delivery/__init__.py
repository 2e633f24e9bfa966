"""The worker's side of a call: claim it, send it, record what happened, retry what a retry can fix.

Guarantees, and how they are kept:
- A call row is finished at most once. The worker claims a queued row with a conditional UPDATE and
  remembers the `started_at` it wrote; it records the outcome only while the row is still running with
  that same `started_at` (a fencing token). A duplicate delivery finds nothing queued; a worker that
  comes back after the sweeper handed its call to another finds its token gone and records nothing.
- Nothing the database accepted is lost. A broker message can vanish (Redis restarted without
  persistence, a worker killed -9 holding prefetched messages); `sweeper.calls_sweep`, run by Celery
  beat, queues again every call stuck in queued or running well past its time.
- Only errors a retry can fix are retried (429, 5xx, timeouts, network), each retry a new row with
  the next attempt number, after an exponential backoff with full jitter or the provider's
  Retry-After, whichever is longer.

Here: taking a call (claimed from the database, or rung claimed by the web: store.preclaimed), sending it,
and what the attempt came to. `prompt` builds what the provider is sent, `outcome` records the attempt
and wakes the API request waiting for it, `followups` schedules a retry or a fallback hop and hands a
WhatsApp conversation to a person.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection as db
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from config.errors import service_unavailable
from connectors import chat_completions, circuit, ratelimit
from connectors.errors import ErrorKind, ProviderError
from connectors.models import ProviderConnection, decrypted_api_key
from connectors.providers import adapter_for
from connectors.safety import check_reachable

from .. import prices, queue, store
from ..models import Call
from ..services import request_settings
from . import followups, outcome, prompt
from .followups import retry_delay

logger = logging.getLogger(__name__)


EARLY_WAIT = 0.25  # seconds a worker thread may wait for a call rung early, instead of ringing it again


@sensitive_variables("api_key")
def call_execute(*, call_id: int, worker: str = "") -> Call | None:
    """Make the provider request for a queued call and record the outcome.

    Returns None when the call is not queued any more (another delivery got there first).
    """
    token = timezone.now()
    claimed = store.call_claim(call_id=call_id, worker=worker[:200], token=token)
    if claimed is None:
        due_in = store.call_due_in(call_id=call_id, now=token)
        if due_in and due_in <= EARLY_WAIT:  # rung early on purpose (queue.RING_EARLY): wait until it is due
            time.sleep(due_in)
            token = timezone.now()
            claimed = store.call_claim(call_id=call_id, worker=worker[:200], token=token)
            due_in = store.call_due_in(call_id=call_id, now=token) if claimed is None else None
    if claimed is None:
        if due_in:  # rung early (a burst grew meanwhile): ring again when it is due
            queue.publish(queue.EXECUTE_CALL, call_id, countdown=due_in)
        else:
            logger.info("call %s is not queued any more; skipping a duplicate delivery", call_id)
        return None
    return _run(claimed)


def call_execute_claimed(packed: bytes, *, worker: str = "") -> Call | None:
    """Make the provider request for a call the web inserted already claimed (store.preclaimed), and record the
    outcome. A ring that is stale or cannot be read whole gives its call back to the queue and claims it from
    the database; returns None when nothing is left to do (the sweeper or another worker has the call)."""
    rung = store.preclaimed.unpack(packed)
    if rung.call_id is None or rung.token is None:
        logger.warning("call doorbell: dropped a call rung claimed that names no call (%r)", packed[:40])
        return None
    age = store.preclaimed.age(rung.token)
    if age <= -store.preclaimed.FRESH_SECONDS:
        logger.warning(
            "call %s was rung claimed %.1f s in this worker's future: the web's clock is ahead. Until the clocks "
            "agree (NTP), such calls are claimed from the database, a statement more each.",
            rung.call_id,
            -age,
        )
    if rung.claimed is None:  # stale (popped late, or clocks apart), or not readable whole
        if not store.preclaimed.unclaim(rung.call_id, rung.token):
            logger.info("call %s, rung claimed %.1f s ago, is not as it was rung; skipping it", rung.call_id, age)
            return None
        return call_execute(call_id=rung.call_id, worker=worker)
    rung.claimed.call.worker = worker[:200]
    return _run(rung.claimed)


def _run(claimed: store.Claimed) -> Call:
    call = claimed.call
    call_id = call.pk
    try:
        return _attempt(claimed)
    except Exception as exc:
        if service_unavailable(exc):
            # The database went away (for longer than `durably` waits): the call stays running, and the
            # sweeper queues it again once its worker's time is up. Not a failure of the call.
            raise
        # A bug or an input nobody foresaw must end as a recorded failure, not a call stuck in "running"
        # that the sweeper would replay for ever. The type only: exception text can quote anything.
        logger.exception("call %s failed inside Switchboard", call_id)
        error = ProviderError(ErrorKind.INTERNAL, f"Switchboard could not finish this call ({type(exc).__name__}).")
        _apply_failure(call, error)
        outcome.ring(call, outcome.finish(call, claimed.has_callback, error=error))
        return call


@sensitive_variables("api_key")
def _attempt(claimed: store.Claimed) -> Call:
    call, history = claimed.call, claimed.history
    connection = call.connection
    overrides = call.conversation.overrides
    if call.connection_id != call.conversation.connection_id:
        # A fallback hop: a model named for the first connection means nothing to this one.
        overrides = {key: value for key, value in overrides.items() if key != "model"}
    wanted = request_settings(connection, overrides)
    call.model = wanted["model"]
    adapter = adapter_for(connection)
    system = prompt.system_prompt_for(call, claimed.prompt) if claimed.prompt else call.conversation.system_prompt
    # What is read to handle the reply is read now: once the provider has answered, only `outcome.finish`
    # (which waits out a database that blinks) may touch the database, or a blink there would leave the
    # call running for the sweeper to send again.
    followups.channel_of(call)  # a WhatsApp reply's handover marker is the channel's
    prices.warm()
    _release_database_connection()
    started = time.monotonic()
    try:
        call.request = adapter.body(messages=prompt.call_messages(call, history, system), **wanted)
        api_key = _usable_key(connection, call.model)
        if not circuit.allow(connection):
            raise ProviderError(
                ErrorKind.PROVIDER_ERROR,
                f"Not sent: {connection.name} failed {settings.CIRCUIT_FAILURES} times in a row, so it is skipped "
                f"for {settings.CIRCUIT_COOLDOWN_SECONDS} s and its fallback answers.",
                skipped=True,
            )
        with ratelimit.limited(connection):
            started = time.monotonic()  # latency is the provider's time, not the wait for a rate-limit slot
            reply = adapter.chat(api_key=api_key, body=call.request, timeout=connection.timeout_seconds)
    except ratelimit.Deferred as deferred:
        _defer(call, deferred)
        return call
    except ProviderError as error:
        if not error.skipped and error.kind not in followups.MESSAGE_ERRORS:
            circuit.record_failure(connection, error)
        call.latency_ms = _elapsed_ms(started)
        _apply_failure(call, error)
        recorded = outcome.finish(call, claimed.has_callback, error=error)
    else:
        circuit.record_success(connection)
        call.latency_ms = _elapsed_ms(started)
        _apply_success(call, reply)
        handover = followups.take_handover_marker(call)
        recorded = outcome.finish(call, claimed.has_callback, reply=reply, handover=handover)
    outcome.ring(call, recorded)
    if recorded:
        logger.info(
            "call %s attempt %s %s in %s ms%s",
            call.pk,
            call.attempt,
            call.status,
            call.latency_ms,
            f" ({call.error_kind}: {call.error_message})" if call.error_kind else "",
        )
    return call


def _release_database_connection() -> None:
    """With a connection pool, hand the connection back while waiting on the provider.

    A threaded worker keeps hundreds of calls in flight; they need a database connection for a few
    milliseconds before and after the call, not for the seconds the provider takes. Taking one again
    afterwards also runs the pool's health check, so a connection that died during a long call is never
    the one the outcome is written on.
    """
    if db.settings_dict.get("OPTIONS", {}).get("pool") and not db.in_atomic_block:
        db.close()


@sensitive_variables("api_key")
def _usable_key(connection: ProviderConnection, model: str) -> str:
    """The decrypted key, once the connection is known to be complete and its URL safe to call."""
    from connectors.crypto import SecretUnreadable

    if not model:
        raise ProviderError(
            ErrorKind.MISSING_MODEL, f"Connection {connection.name!r} has no model, so nothing was sent."
        )
    check_reachable(connection.base_url)
    try:
        api_key = decrypted_api_key(connection)
    except SecretUnreadable as error:
        raise ProviderError(ErrorKind.CONFIG, str(error)) from None
    if not api_key:
        raise ProviderError(ErrorKind.CONFIG, f"Connection {connection.name!r} has no API key, so nothing was sent.")
    return api_key


def _defer(call: Call, deferred: ratelimit.Deferred) -> None:
    """Hand the call back to the queue until its connection's limits let it through (still this attempt)."""
    run_after = timezone.now() + timedelta(seconds=deferred.seconds)
    if Call.objects.filter(pk=call.pk, status=Call.Status.RUNNING, started_at=call.started_at).update(
        status=Call.Status.QUEUED, started_at=None, run_after=run_after
    ):
        queue.publish(queue.EXECUTE_CALL, call.pk, countdown=deferred.seconds)
        logger.info("call %s waits %.1f s: %s", call.pk, deferred.seconds, deferred)
    call.status = Call.Status.QUEUED


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _apply_success(call: Call, reply: chat_completions.ChatReply) -> None:
    call.status = Call.Status.SUCCEEDED
    call.http_status = reply.status
    call.response_body = reply.body
    call.reply_text = reply.content
    call.finish_reason = reply.finish_reason
    call.provider_request_id = reply.response_id
    call.prompt_tokens = reply.prompt_tokens
    call.completion_tokens = reply.completion_tokens
    call.cost_usd = prices.call_cost(call.connection, call.model, reply)
    call.finished_at = timezone.now()


def _apply_failure(call: Call, error: ProviderError) -> None:
    call.reply, call.reply_text, call.finish_reason, call.provider_request_id = None, "", "", ""
    call.prompt_tokens = call.completion_tokens = call.cost_usd = None
    call.status = Call.Status.FAILED
    call.http_status = error.status
    call.response_body = error.body
    call.error_kind = error.kind
    call.error_message = error.message
    call.finished_at = timezone.now()


__all__ = ["call_execute", "call_execute_claimed", "retry_delay"]
