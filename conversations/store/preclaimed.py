"""A relayed API request's call, inserted already claimed and rung with what its worker's claim would read.

The web has nearly everything a relayed request's call needs in hand: a chat-completions request brings its
conversation's turns, `/api/v1/messages` has the conversation and its template (and reads the earlier turns
in the statement that inserts the message, `queueing.call_accept`), and the connection was just checked.
Queued the usual way, the worker's first act was to read all that back from the database (the claim,
`worker.call_claim`): a statement on every relayed request's path. So when a worker that takes such calls
listens (`doorbell.taking_claimed`), the web inserts the call `running`, its queued_at as `started_at` (the
fencing token the worker's outcome is recorded against), and rings CLAIMED with the call's and the
conversation's rows, the history and the template's text (`pack`). The worker that pops it rebuilds the
claim (`unpack`) and goes straight to the provider. Only for API conversations, a call due now for a new
message, and no template version pinned (`claimable`); every other call is queued and claimed as before.

What keeps it as safe as a claim:
- The connection never travels: its row holds the encrypted API key, which stays out of Redis. The worker
  reads it by id, remembered between calls as the API remembers its configuration (`remembered`), so a
  change to it is seen as soon as PostgreSQL announces it.
- A call rung claimed is fresh for FRESH_SECONDS. A worker that pops it later (every worker was busy, or
  none ran) gives it back to the queue (`unclaim`, conditional on the token) and claims it from the database
  like any queued call; if the sweeper queued it again meanwhile, the token no longer matches and the
  worker does nothing. FRESH_SECONDS is far below the sweeper's running deadline (the connection's timeout
  plus OUTBOX_RECORD_PATIENCE_SECONDS plus CALL_RUNNING_GRACE_SECONDS), so the sweeper never takes back a
  call a worker is about to start.
- A ring is pushed once (`connectors.ratelimit.redis_at` never retries a command), and never followed by a
  second way in: a worker that pops a fresh ring sends without asking the database, so one call must
  never have two rings. When Redis cannot be reached, nothing was sent, and the call is queued as any
  other (for the sweeper's next pass while the broker is away). When the push was sent and not confirmed,
  whether Redis took it is unknown, so the call is left running: a worker runs it if the ring arrived, and
  if not, the sweeper queues it again once the call's running deadline passes, as it does for a worker
  that died. The same holds for a ring lost with Redis. (Web processes stop ringing claimed within
  seconds of Redis failing: `doorbell.taking_claimed` reads as no.)
- Rings no worker takes while fresh (every worker that takes them died, or a rollback left only workers
  that do not) are popped by the sweeper and their calls queued again (`left_behind`).

PostgreSQL only, as the statements the claim replaces: elsewhere calls are queued and claimed as before.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from connectors.models import ProviderConnection

from .. import doorbell, queue
from ..models import Call, Conversation
from . import remembered
from .sql import all_fields, dumps, fetch_one, instance, postgresql, quote, row_instance, row_json
from .worker import Claimed, Prompt

logger = logging.getLogger(__name__)

FRESH_SECONDS = 5.0  # a call rung claimed and popped later than this is claimed again from the database
VERSION = 2  # what a ring carries (2: the template's text); a worker that cannot read a ring claims from the database


def claimable(conversation: Conversation) -> bool:
    """Whether a call for `conversation` can be rung claimed: an API conversation (a WhatsApp one reads its
    channel anyway), with its integration and template already in hand and no version pinned (a test run's),
    and a worker listening that takes such calls."""
    return (
        conversation.channel_id is None
        and conversation.integration_id is not None
        and Conversation.integration.is_cached(conversation)
        and conversation.template_version_id is None
        and (conversation.template_id is None or Conversation.template.is_cached(conversation))
        and doorbell.taking_claimed()
    )


def claim(call: Call, params: dict, prefix: str) -> None:
    """Make the call's INSERT parameters (`prefix` + column) insert it running, its queued_at as its token."""
    call.status, call.started_at = Call.Status.RUNNING, call.queued_at
    params[f"{prefix}status"], params[f"{prefix}started_at"] = call.status, params[f"{prefix}queued_at"]


def ring_on_commit(conversation: Conversation, history: list[tuple[str, str]], call: Call) -> None:
    """Ring the call claimed once its rows commit. `history`: (role, content) newest first, as the claim reads."""
    transaction.on_commit(lambda: _ring(conversation, history[: settings.CONVERSATION_HISTORY_MESSAGES], call))


def _ring(conversation: Conversation, history: list[tuple[str, str]], call: Call) -> None:
    try:
        packed = pack(conversation, history, call)
    except Exception:  # a column no ring can carry, say: nothing went to Redis, so the call is queued instead
        logger.exception("call %s cannot be rung claimed; queueing it as usual", call.pk)
        _queue_instead(call)
        return
    try:
        doorbell.ring_claimed(packed)
    except doorbell.NotRung as error:  # Redis unreachable, nothing sent: queued as usual, or for the sweeper
        logger.warning("call %s could not be rung claimed (%s); queueing it as usual", call.pk, error)
        _queue_instead(call)
    except queue.broker_errors() as error:
        # Whether Redis took the ring is not known (its answer can be lost after the push), and a worker that
        # pops a fresh ring sends at once: queueing the call now could send it twice. It stays running: a
        # worker runs it if the ring arrived, and the sweeper queues it again at its running deadline if not.
        logger.warning(
            "call %s: Redis did not confirm its ring (%s); left to the sweeper if it was lost", call.pk, error
        )


def _queue_instead(call: Call) -> None:
    """Give a call nothing was rung for back to the queue, and ring it as any queued call (`queue.publish`
    leaves it for the sweeper's next pass when the broker is away)."""
    if unclaim(call.pk, call.started_at):
        call.status, call.started_at = Call.Status.QUEUED, None
        queue.publish(queue.EXECUTE_CALL, call.pk)


def pack(conversation: Conversation, history: list[tuple[str, str]], call: Call) -> str:
    """What the worker's claim would have read, as JSON: the call's and the conversation's rows, the history
    the provider may be sent, whether an outcome is posted back, and the template's text."""
    template = conversation.template if conversation.template_id else None
    return dumps(
        {
            "v": VERSION,
            "call": row_json(call),
            "conversation": row_json(conversation),
            "history": history,
            "callback": bool(conversation.integration.callback_url),
            "prompt": template
            and [template.name, template.system_prompt, template.user_message, template.published_id],
        }
    )


@dataclass
class Rung:
    """What a worker read from a ring: the call and its token when it could, the whole claim when the ring is
    whole and its connection still exists."""

    call_id: int | None = None
    token: datetime | None = None
    claimed: Claimed | None = None


def unpack(packed: bytes) -> Rung:
    """The claim a ring carries while it is fresh, with its connection read by id (remembered); past
    FRESH_SECONDS only its call and token, read from the database instead."""
    try:
        held = json.loads(packed)
        call = row_instance(Call, held["call"])
    except (ValueError, TypeError, LookupError, AttributeError, ValidationError) as error:
        logger.warning("a call rung claimed that cannot be read (%s)", error)
        return Rung()
    rung = Rung(call.pk, call.started_at)
    if rung.call_id is None or rung.token is None:
        return Rung()
    if abs(age(rung.token)) >= FRESH_SECONDS:
        return rung
    try:
        if held.get("v") != VERSION:
            raise ValueError(f"version {held.get('v')!r}, not {VERSION}")
        conversation = row_instance(Conversation, held["conversation"])
        history = [(str(role), str(content)) for role, content in held["history"]]
        has_callback = bool(held["callback"])
        prompt = _prompt(held["prompt"])
    except (ValueError, TypeError, LookupError, AttributeError, ValidationError) as error:
        logger.warning("call %s was rung claimed with what cannot be read (%s); claiming it again", call.pk, error)
        return rung
    connection = connection_by_id(call.connection_id)
    if call.conversation_id == conversation.pk and connection is not None:
        call.conversation, call.connection = conversation, connection
        rung.claimed = Claimed(call, history, has_callback, prompt)
    return rung


def age(token: datetime) -> float:
    """Seconds since a call was rung claimed, by this process's clock (negative when the web's is ahead)."""
    return (timezone.now() - token).total_seconds()


def left_behind() -> list[int]:
    """Calls rung claimed that no worker took while they were fresh (no worker that takes them is left: all
    died, or a rollback to workers that do not), given back to the queue; their ids. The sweeper calls this
    so that they wait minutes less than the running deadline. Each ring is popped before its call is touched:
    a pop is exclusive, so no worker can be sending the call meanwhile."""
    redis_client, queued = doorbell.client(), []
    while len(queued) < 1000:
        head = redis_client.lindex(doorbell.CLAIMED, 0)
        if head is None or _fresh(head):
            break
        popped = redis_client.lpop(doorbell.CLAIMED)  # the head, unless a worker took it meanwhile
        if popped is None:
            break
        rung = _rung(popped)
        if rung.call_id is not None and unclaim(rung.call_id, rung.token):
            queued.append(rung.call_id)
    return queued


def _fresh(packed: bytes) -> bool:
    rung = _rung(packed)
    return rung.token is not None and abs(age(rung.token)) < FRESH_SECONDS


def _rung(packed: bytes) -> Rung:
    """The call and token a ring names, without reading the rest (none for one that names no call)."""
    try:
        call = json.loads(packed)["call"]
        return Rung(int(call["id"]), Call._meta.get_field("started_at").to_python(call["started_at"]))
    except (ValueError, TypeError, LookupError, ValidationError):
        return Rung()


def _prompt(held) -> Prompt | None:
    if held is None:
        return None
    name, system, user, version_id = held
    if not all(isinstance(text, str) for text in (name, system, user)) or not isinstance(version_id, int | None):
        raise TypeError(f"not a template's name, texts and version: {held!r:.80}")
    return Prompt(name, system, user, version_id)


def connection_by_id(pk: int) -> ProviderConnection | None:
    db = postgresql()
    if db is None:
        return ProviderConnection.objects.filter(pk=pk).first()
    row = remembered.read(("connection by id", pk), lambda: fetch_one(db, _connection_sql(), {"id": pk}))
    return None if row is None else instance(db, ProviderConnection, all_fields(ProviderConnection), iter(row))


def unclaim(call_id: int, token) -> bool:
    """Give a call rung claimed back to the queue, if it is still as the web inserted it (running with this
    token). False when the sweeper or another worker has it now."""
    return bool(
        Call.objects.filter(pk=call_id, status=Call.Status.RUNNING, started_at=token).update(
            status=Call.Status.QUEUED, started_at=None
        )
    )


def _connection_sql() -> str:
    columns = ", ".join(quote(f.column) for f in all_fields(ProviderConnection))
    return f"SELECT {columns} FROM {quote(ProviderConnection._meta.db_table)} WHERE id = %(id)s"  # noqa: S608
