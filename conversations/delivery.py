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
"""

from __future__ import annotations

import enum
import logging
import random
import time
from contextlib import nullcontext
from datetime import timedelta

from django.conf import settings
from django.db import connection as db
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from config.errors import service_unavailable
from connectors import chat_completions, circuit, ratelimit
from connectors.errors import ErrorKind, ProviderError
from connectors.models import ProviderConnection, decrypted_api_key
from connectors.providers import adapter_for
from connectors.safety import check_reachable

from . import outbox, prices, queue, store, wakeup
from .models import Call
from .rendering import TemplateVariableError
from .services import request_settings
from .tries import durably

logger = logging.getLogger(__name__)


def call_messages(call: Call, history: list[tuple[str, str]], system: str) -> list[dict[str, str]]:
    """The chat history up to the customer message this call answers, as the provider expects it.

    `history` is the conversation's newest messages first, as `store.call_claim` read them. Only those that
    fit CONVERSATION_HISTORY_TOKENS (counted roughly, four characters a token) are sent, like a chatbot's
    memory; the current message always is.
    """
    budget = settings.CONVERSATION_HISTORY_TOKENS
    kept = []
    for role, content in history:
        budget -= len(content) // 4 + 1
        if kept and budget < 0:
            break
        # What the team wrote, and Switchboard's own notices, were answers from the business: the model
        # reads them as the assistant's turns, so it picks up where a person left off.
        kept.append({"role": "user" if role == "user" else "assistant", "content": content})
    return ([{"role": "system", "content": system}] if system else []) + kept[::-1]


def system_prompt_for(call: Call, prompt: store.Prompt) -> str:
    """The system prompt of the template version published now (or the version a test run pinned), with the
    conversation's variables, so a publish or a rollback reaches an ongoing conversation at its next message.
    Records that version on the call. `prompt` is that text as the claim read it (no query here); a
    conversation whose variables the new version cannot fill keeps the prompt it started with."""
    conversation = call.conversation
    call.template_version_id = prompt.version_id
    try:
        system, _ = prompt.render_lenient(variables=conversation.variables)
    except TemplateVariableError:
        logger.warning("call %s: template version lacks a value; sending the conversation's first prompt", call.pk)
        return conversation.system_prompt
    return system


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
    if rung.claimed is None or abs(age) >= store.preclaimed.FRESH_SECONDS:
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
        _ring(call, _finish(call, claimed.has_callback, error=error))
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
    system = system_prompt_for(call, claimed.prompt) if claimed.prompt else call.conversation.system_prompt
    _release_database_connection()
    started = time.monotonic()
    try:
        call.request = adapter.body(messages=call_messages(call, history, system), **wanted)
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
        if not error.skipped and error.kind not in MESSAGE_ERRORS:
            circuit.record_failure(connection, error)
        call.latency_ms = _elapsed_ms(started)
        _apply_failure(call, error)
        recorded = _finish(call, claimed.has_callback, error=error)
    else:
        circuit.record_success(connection)
        call.latency_ms = _elapsed_ms(started)
        _apply_success(call, reply)
        handover = _take_handover_marker(call)
        recorded = _finish(call, claimed.has_callback, reply=reply, handover=handover)
    _ring(call, recorded)
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


# What a finished attempt writes; everything else on the row was set when it was queued or claimed.
OUTCOME_FIELDS = [
    "status",
    "model",
    "request",
    "http_status",
    "response_body",
    "reply",
    "reply_text",
    "finish_reason",
    "provider_request_id",
    "error_kind",
    "error_message",
    "latency_ms",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "finished_at",
    "template_version",
    "worker",  # set by the claim, or here for a call the web claimed as it queued it (store.preclaimed)
]


def _finish(
    call: Call,
    has_callback: bool,
    *,
    reply: chat_completions.ChatReply | None = None,
    error: ProviderError | None = None,
    handover: bool = False,
) -> Recorded:
    """Store the outcome if this worker still holds the call; schedule the next attempt if one can help, or
    put what the outcome sends out (a callback, a WhatsApp reply) in the outbox. On WhatsApp, a reply that
    hands over, or a failure for good, leaves the conversation waiting for a person (the customer gets the
    channel's notice or apology instead of silence).

    A database that blinks meanwhile is waited for (`tries.durably`): the provider's answer is in hand,
    and losing it would mean asking again.
    """
    retry = (
        error is not None
        and not error.permanent
        and not error.skipped
        and call.connection_attempt < call.connection.max_attempts
    )
    fallback = None if retry or error is None else fallback_for(call, error)
    gave_up = error is not None and not retry and fallback is None and call.conversation.channel_id is not None
    reply_text = call.reply_text if reply is not None and call.reply_text else None

    def record() -> Recorded:
        outgoing = [] if retry or fallback else outbox.outbound_kinds(call, has_callback=has_callback)
        # The outcome is one statement on PostgreSQL; a retry's next row, a fallback's, the outbox rows
        # or a handover share its transaction, so that a worker dying in between cannot leave an outcome
        # without what follows from it.
        with transaction.atomic() if retry or fallback or outgoing or handover or gave_up else nullcontext():
            if not store.call_record(call=call, fields=OUTCOME_FIELDS, reply_text=reply_text):
                logger.warning("call %s was handed to another worker meanwhile; dropping this outcome", call.pk)
                return Recorded.NOTHING
            if retry:
                _schedule_retry(call, error)
            elif fallback:
                _schedule_fallback(call, fallback, error)
            elif outgoing:
                outbox.outbound_create(call=call, kinds=outgoing)
            if handover or gave_up:
                _hand_over(call, handover=handover)
        return Recorded.FOLLOWED if retry or fallback else Recorded.FINAL

    return durably(record)


class Recorded(enum.Enum):
    """What `_finish` did with an outcome."""

    NOTHING = "nothing"  # the sweeper handed the call to another worker meanwhile: nothing written
    FINAL = "final"  # the message's last attempt: answered, or failed for good
    FOLLOWED = "followed"  # recorded, and a retry or a fallback hop is queued after it

    def __bool__(self) -> bool:
        return self is not Recorded.NOTHING


def _ring(call: Call, recorded: Recorded) -> None:
    """Wake an API request waiting for this message (only API conversations have one); a final outcome
    travels with the ring, so the waiter answers without reading the row back."""
    if recorded and call.conversation.integration_id:
        wakeup.ring(call.message_id, call if recorded is Recorded.FINAL else None)


def _take_handover_marker(call: Call) -> bool:
    """Whether a WhatsApp reply hands the conversation over (it carries the channel's marker, which is
    taken out: the customer never reads it)."""
    channel = _channel_of(call)
    marker = channel.handover_marker if channel else ""
    if not marker or marker not in call.reply_text:
        return False
    call.reply_text = call.reply_text.replace(marker, "").strip()
    return True


def _hand_over(call: Call, *, handover: bool) -> None:
    from .models import Conversation, ConversationEvent
    from .support.services import conversation_hand_over

    channel = _channel_of(call)
    if handover:  # the model asked for a person; its reply, if any, is the notice
        reason, event = Conversation.Reason.MODEL, ConversationEvent.Kind.MODEL_HANDED_OVER
        notice = "" if call.reply_text else channel.handover_text
    else:  # every attempt failed: the customer gets the apology instead of silence
        reason, event = Conversation.Reason.PROVIDER_FAILURE, ConversationEvent.Kind.PROVIDER_FAILED
        notice = channel.apology_text
    conversation_hand_over(
        conversation=call.conversation, reason=reason, event=event, note=call.error_summary, notice=notice
    )


def _channel_of(call: Call):
    """The WhatsApp channel a call's conversation came in on (its settings), or None."""
    from .models import WhatsAppChannel

    if call.conversation.channel_id is None:
        return None
    if not hasattr(call, "_channel"):
        call._channel = WhatsAppChannel.objects.get(pk=call.conversation.channel_id)
    return call._channel


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds before the next attempt: exponential backoff with full jitter, or Retry-After if longer.

    The same rule as Celery's retry_backoff/retry_jitter, in fractions of a second (Celery's helper works
    in whole seconds). Full jitter spreads the retries of many calls that failed together.
    """
    ceiling = min(settings.CALL_RETRY_BACKOFF_MAX_SECONDS, settings.CALL_RETRY_BACKOFF_SECONDS * 2 ** (attempt - 1))
    return max(random.uniform(0, ceiling), retry_after or 0.0)  # noqa: S311 - jitter, not cryptography


# Errors the message itself causes: another provider would refuse it too, so no fallback is tried.
MESSAGE_ERRORS = frozenset({ErrorKind.BAD_REQUEST, ErrorKind.CONTEXT_TOO_LONG, ErrorKind.INTERNAL})


def fallback_for(call: Call, error: ProviderError) -> ProviderConnection | None:
    """The connection that gets the message next when this call failed for good: its connection's fallback,
    unless the message caused the error or that connection already had its turn at this message."""
    if error.kind in MESSAGE_ERRORS or not call.connection.fallback_id:
        return None
    tried = set(Call.objects.filter(message_id=call.message_id).values_list("connection_id", flat=True))
    fallback = call.connection.fallback
    return None if fallback.pk in tried else fallback


def _schedule_fallback(call: Call, fallback: ProviderConnection, error: ProviderError) -> Call:
    """The next hop: a new attempt row on the fallback connection, linked to the call that failed."""
    hop = Call.objects.create(
        conversation_id=call.conversation_id,
        message_id=call.message_id,
        connection=fallback,
        model=fallback.model,
        attempt=call.attempt + 1,
        connection_attempt=1,
        fallback_from=call,
    )
    queue.publish_on_commit(queue.EXECUTE_CALL, hop.pk)
    logger.info(
        "call %s failed on %s (%s); falling back to %s as call %s",
        call.pk,
        call.connection,
        error.kind,
        fallback,
        hop.pk,
    )
    return hop


def _schedule_retry(call: Call, error: ProviderError) -> Call:
    delay = retry_delay(call.connection_attempt, error.retry_after)
    retry = Call.objects.create(
        conversation_id=call.conversation_id,
        message_id=call.message_id,
        connection_id=call.connection_id,
        model=call.model,
        attempt=call.attempt + 1,
        connection_attempt=call.connection_attempt + 1,
        fallback_from_id=call.fallback_from_id,  # still answering for the connection it fell back from
        run_after=timezone.now() + timedelta(seconds=delay),
    )
    queue.publish_on_commit(queue.EXECUTE_CALL, retry.pk, countdown=delay)
    logger.info("call %s: %s; attempt %s in %.1f s as call %s", call.pk, error.kind, retry.attempt, delay, retry.pk)
    return retry
