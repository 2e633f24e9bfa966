"""A relayed chat request's call, inserted already claimed and rung with what its worker's claim would read.

A chat-completions request brings everything its call needs: the conversation is new, its history is the
request's own turns, and its connection was just checked. Queued the usual way, the worker's first act was
to read all that back from the database (the claim, `worker.call_claim`): a statement on every relayed
request's path, and a fifth of its database time. So when a worker that takes such calls listens
(`doorbell.taking_claimed`), the web inserts the call `running`, with its own clock as `started_at` (the
fencing token the worker's outcome is recorded against), and rings CLAIMED with the call's and the
conversation's rows and the history (`pack`). The worker that pops it rebuilds the claim (`unpack`) and goes
straight to the provider.

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
- A doorbell lost with Redis leaves the call running without a worker: the sweeper queues it again at that
  running deadline, as it does for a worker that died (a queued call's lost doorbell is found after
  CALL_QUEUED_STALE_SECONDS; both are minutes).
- When Redis refuses the ring, the web gives the call back to the queue at once and rings as for any
  queued call (`queue.publish`, which leaves it for the sweeper if the broker is away).

PostgreSQL only, as the statements the claim replaces: elsewhere calls are queued and claimed as before.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime

from django.core.exceptions import ValidationError

from connectors.models import ProviderConnection

from ..models import Call, Conversation, Message
from . import remembered
from .sql import all_fields, dumps, fetch_one, instance, postgresql, quote, row_instance, row_json
from .worker import Claimed

logger = logging.getLogger(__name__)

FRESH_SECONDS = 5.0  # a call rung claimed and popped later than this is claimed again from the database
VERSION = 1  # what a ring carries; a worker that cannot read a ring claims its call from the database


def pack(conversation: Conversation, history: list[Message], call: Call, *, has_callback: bool) -> str:
    """What the worker's claim would have read, as JSON: the call's and the conversation's rows, the history
    the provider may be sent (newest first, as the claim reads it) and whether an outcome is posted back."""
    return dumps(
        {
            "v": VERSION,
            "call": row_json(call),
            "conversation": row_json(conversation),
            "history": [(m.role, m.content) for m in history],
            "callback": has_callback,
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
    """The claim a ring carries, with its connection read by id (remembered)."""
    try:
        held = json.loads(packed)
        call = row_instance(Call, held["call"])
    except (ValueError, TypeError, LookupError, AttributeError, ValidationError) as error:
        logger.warning("a call rung claimed that cannot be read (%s)", error)
        return Rung()
    rung = Rung(call.pk, call.started_at)
    try:
        if held.get("v") != VERSION:
            raise ValueError(f"version {held.get('v')!r}, not {VERSION}")
        conversation = row_instance(Conversation, held["conversation"])
        history = [(str(role), str(content)) for role, content in held["history"]]
        has_callback = bool(held["callback"])
    except (ValueError, TypeError, LookupError, AttributeError, ValidationError) as error:
        logger.warning("call %s was rung claimed with what cannot be read (%s); claiming it again", call.pk, error)
        return rung
    connection = connection_by_id(call.connection_id)
    if call.conversation_id == conversation.pk and connection is not None:
        call.conversation, call.connection = conversation, connection
        rung.claimed = Claimed(call, history, has_callback)
    return rung


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
