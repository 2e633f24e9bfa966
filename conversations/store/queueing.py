"""Queueing a call: its rows written in one hand-written statement on PostgreSQL, then the workers rung.

Every way a call is queued comes here: the API (both endpoints), WhatsApp, the console, test runs, a hand
back. Through the ORM a call was a transaction of several statements (the customer's message, the call, the
conversation's `updated_at`; for a relayed chat request also the conversation and its earlier turns: BEGIN,
INSERTs, COMMIT), each a round trip and each built anew. On PostgreSQL they are one statement of
data-modifying CTEs, atomic on its own, bound on the server.

Rows are the models' own: the caller builds unsaved instances, so defaults and `auto_now` apply as the ORM
would apply them, and column lists come from `_meta`. Other databases (SQLite for `make run`) save the same
instances through the ORM. The call is rung once its rows are committed: at once after the statement in
autocommit (the web's case), or when the transaction around it commits.
"""

from __future__ import annotations

import logging
from functools import cache

from django.conf import settings
from django.db import transaction

from .. import doorbell, queue
from ..models import Call, Conversation, Message
from . import preclaimed
from .sql import fetch_one, insert_columns, insert_params, insert_values, postgresql, quote

logger = logging.getLogger(__name__)

# A chat request with more messages than this is saved through the ORM (in batches): each message is seven
# parameters of the statement (PostgreSQL takes at most 65,535), and each count is a statement of its own to
# prepare. Relayed histories are usually a few turns.
ONE_STATEMENT_MESSAGES = 50


def chat_accept(conversation: Conversation, messages: list[Message], call: Call) -> Call:
    """Save a new conversation, its `messages` in order (the last is the one `call` answers) and the queued
    `call`; ring the workers. Returns `call`, saved, with its conversation and message set."""
    db = postgresql()
    if db is None or len(messages) > ONE_STATEMENT_MESSAGES:
        return _chat_accept_orm(conversation, messages, call)
    params = {}
    insert_params(db, "c_", conversation, params)
    for n, message in enumerate(messages):
        insert_params(db, f"m{n}_", message, params)
    insert_params(db, "k_", call, params)
    claimed = doorbell.taking_claimed()
    if claimed:  # inserted running, claimed as it is queued (store.preclaimed): its queued_at is its token
        call.status, call.started_at = Call.Status.RUNNING, call.queued_at
        params["k_status"], params["k_started_at"] = call.status, params["k_queued_at"]
    conversation.pk, message_ids, call.pk = fetch_one(db, _chat_sql(len(messages), no_wait=db.get_autocommit()), params)
    for message, message_id in zip(messages, message_ids, strict=True):
        message.pk = message_id
        message.conversation = conversation  # linked once the ids are known: assigning a row copies its id
    call.conversation, call.message = conversation, messages[-1]
    _saved(db, conversation, *messages, call)
    if claimed:
        transaction.on_commit(lambda: _ring_claimed(conversation, messages, call))
    else:
        queue.publish_on_commit(queue.EXECUTE_CALL, call.pk)
    return call


def _ring_claimed(conversation: Conversation, messages: list[Message], call: Call) -> None:
    """Ring a call inserted claimed with what its worker needs; if Redis refuses, give it back to the queue and
    ring it as any queued call (which leaves it for the sweeper when the broker is away)."""
    history = messages[::-1][: settings.CONVERSATION_HISTORY_MESSAGES]  # newest first, as the claim reads it
    integration = conversation.integration if conversation.integration_id else None
    try:
        doorbell.ring_claimed(
            preclaimed.pack(conversation, history, call, has_callback=bool(integration and integration.callback_url))
        )
    except queue.broker_errors() as error:
        logger.warning("call %s could not be rung claimed (%s); queueing it as usual", call.pk, error)
        if preclaimed.unclaim(call.pk, call.started_at):
            call.status, call.started_at = Call.Status.QUEUED, None
            queue.publish(queue.EXECUTE_CALL, call.pk)


def call_accept(conversation: Conversation, message: Message, call: Call, *, countdown: float | None = None) -> Call:
    """Save the queued `call` answering `message` in an existing `conversation` (and `message` with it when it
    is not saved yet), move the conversation up the lists, and ring the workers once that commits (after
    `countdown` seconds)."""
    db = postgresql()
    message.conversation = call.conversation = conversation
    if db is None:
        return _call_accept_orm(conversation, message, call, countdown)
    new_message = message._state.adding
    params = {"conversation": conversation.pk, "message": message.pk}
    params["touched_at"] = Conversation._meta.get_field("updated_at").pre_save(conversation, False)
    insert_params(db, "k_", call, params)
    if new_message:
        insert_params(db, "m0_", message, params)
    message.pk, call.pk = fetch_one(db, _call_sql(new_message), params)
    call.message = message  # once its id is known: assigning a row copies its id
    _saved(db, message, call)
    queue.publish_on_commit(queue.EXECUTE_CALL, call.pk, countdown=countdown)
    return call


def _saved(db, *instances) -> None:
    for saved in instances:
        saved._state.adding, saved._state.db = False, db.alias  # as if loaded: in the database now


def _chat_accept_orm(conversation: Conversation, messages: list[Message], call: Call) -> Call:
    with transaction.atomic():
        conversation.save(force_insert=True)
        for message in messages:
            message.conversation = conversation
        Message.objects.bulk_create(messages[:-1])  # in batches the database takes, numbered in order
        messages[-1].save(force_insert=True)
        call.conversation, call.message = conversation, messages[-1]
        call.save(force_insert=True)
        queue.publish_on_commit(queue.EXECUTE_CALL, call.pk)
    return call


def _call_accept_orm(conversation: Conversation, message: Message, call: Call, countdown: float | None) -> Call:
    with transaction.atomic():
        if message._state.adding:
            message.save(force_insert=True)
        call.message = message
        call.save(force_insert=True)
        conversation.save(update_fields=["updated_at"])
        queue.publish_on_commit(queue.EXECUTE_CALL, call.pk, countdown=countdown)
    return call


# --- PostgreSQL ------------------------------------------------------------------------------------


@cache
def _chat_sql(message_count: int, *, no_wait: bool) -> str:
    conversation_id = "(SELECT id FROM conversation)"
    rows = ", ".join(insert_values(Message, f"m{n}_", conversation_id) for n in range(message_count))
    # The messages go in as one multi-row VALUES, whose rows PostgreSQL inserts (and numbers) in the order
    # written, as Django's bulk_create also relies on: the worker reads a conversation's history up to its
    # call's message by id, and by created_at, which the rows carry in the same order. The call reads
    # `turns`, so it is inserted after them; its message is the last of them.
    # no_wait (in autocommit, as the web runs it; inside someone else's transaction its commit is left alone):
    # the commit does not wait for its WAL flush (synchronous_commit off for this transaction only),
    # because no client learns of these rows before something later flushes them. A chat completions request
    # is answered with the call's outcome, whose commit waits for the flush and so makes these rows durable
    # first; the one answer that does not wait for an outcome ("no reply in time, queued as call N") calls
    # durable() first. A crash in between loses a request nobody was told was taken, as a dropped
    # connection would. The flush is 0.2 ms on the quiet 2-core benchmark machine, 1.3-2.3 ms while
    # other work shares its disk (tests running beside it).
    return f"""
        WITH conversation AS (
            INSERT INTO {quote(Conversation._meta.db_table)} ({insert_columns(Conversation)})
            VALUES {insert_values(Conversation, "c_")}
            RETURNING id
        ), turns AS (
            INSERT INTO {quote(Message._meta.db_table)} ({insert_columns(Message, "conversation_id")})
            VALUES {rows}
            RETURNING id
        ), queued AS (
            INSERT INTO {quote(Call._meta.db_table)} ({insert_columns(Call, "conversation_id", "message_id")})
            VALUES {insert_values(Call, "k_", conversation_id, "(SELECT max(id) FROM turns)")}
            RETURNING id
        )
        SELECT {conversation_id}, (SELECT array_agg(id ORDER BY id) FROM turns), (SELECT id FROM queued)
        {"FROM (SELECT set_config('synchronous_commit', 'off', true)) AS no_wait" if no_wait else ""}
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta and parameter names


@cache
def _call_sql(new_message: bool) -> str:
    message_id = "(SELECT id FROM turn)" if new_message else "%(message)s"
    turn = (
        f"""turn AS (
            INSERT INTO {quote(Message._meta.db_table)} ({insert_columns(Message, "conversation_id")})
            VALUES {insert_values(Message, "m0_", "%(conversation)s")}
            RETURNING id
        ),"""  # noqa: S608 - quoted names from the models' _meta and parameter names
        if new_message
        else ""
    )
    # The conversation's updated_at moves up with each call, as the ORM's save did: lists sort by it.
    return f"""
        WITH {turn} queued AS (
            INSERT INTO {quote(Call._meta.db_table)} ({insert_columns(Call, "conversation_id", "message_id")})
            VALUES {insert_values(Call, "k_", "%(conversation)s", message_id)}
            RETURNING id
        ), touched AS (
            UPDATE {quote(Conversation._meta.db_table)} SET updated_at = %(touched_at)s WHERE id = %(conversation)s
        )
        SELECT {message_id}, (SELECT id FROM queued)
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta and parameter names


def durable() -> None:
    """Wait until every commit so far is on disk (chat_accept's does not wait). PostgreSQL flushes the
    write-ahead log up to a transaction's commit when the transaction has an id; txid_current() gives this
    one an id, so its commit waits for everything committed before it."""
    db = postgresql()
    if db is not None and not db.in_atomic_block:
        fetch_one(db, "SELECT txid_current()", {})
