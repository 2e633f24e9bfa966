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

from functools import cache

from django.conf import settings
from django.db import transaction

from .. import queue
from ..models import Call, Conversation, Message
from . import preclaimed
from .sql import fetch_one, insert_columns, insert_params, insert_values, postgresql, quote, turns

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
    claimed = preclaimed.claimable(conversation)
    if claimed:
        preclaimed.claim(call, params, "k_")
    conversation.pk, message_ids, call.pk = fetch_one(db, _chat_sql(len(messages), no_wait=db.get_autocommit()), params)
    for message, message_id in zip(messages, message_ids, strict=True):
        message.pk = message_id
        message.conversation = conversation  # linked once the ids are known: assigning a row copies its id
    call.conversation, call.message = conversation, messages[-1]
    _saved(db, conversation, *messages, call)
    if claimed:
        preclaimed.ring_on_commit(conversation, [(m.role, m.content) for m in reversed(messages)], call)
    else:
        queue.publish_on_commit(queue.EXECUTE_CALL, call.pk)
    return call


def call_accept(conversation: Conversation, message: Message, call: Call, *, countdown: float | None = None) -> Call:
    """Save the queued `call` answering `message` in an existing `conversation` (and `message` with it when it
    is not saved yet), move the conversation up the lists, and ring the workers once that commits (after
    `countdown` seconds)."""
    db = postgresql()
    message.conversation = call.conversation = conversation
    if db is None:
        return _call_accept_orm(conversation, message, call, countdown)
    new_message = message._state.adding
    # Rung claimed (store.preclaimed) when due now and for a new message: the statement then also reads the
    # conversation's earlier turns, which the claim would have read.
    claimed = new_message and not countdown and preclaimed.claimable(conversation)
    params = {"conversation": conversation.pk, "message": message.pk}
    params["touched_at"] = Conversation._meta.get_field("updated_at").pre_save(conversation, False)
    insert_params(db, "k_", call, params)
    if new_message:
        insert_params(db, "m0_", message, params)
    if claimed:
        preclaimed.claim(call, params, "k_")
        params["earlier"] = max(0, settings.CONVERSATION_HISTORY_MESSAGES - 1)
    message.pk, call.pk, earlier = fetch_one(db, _call_sql(new_message, with_history=claimed), params)
    call.message = message  # once its id is known: assigning a row copies its id
    _saved(db, message, call)
    if claimed:
        history = [(message.role, message.content), *turns(earlier)]
        preclaimed.ring_on_commit(conversation, history, call)
    else:
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
def _call_sql(new_message: bool, *, with_history: bool = False) -> str:
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
        SELECT {message_id}, (SELECT id FROM queued), {_earlier() if with_history else "NULL"}
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta and parameter names


def _earlier() -> str:
    """The conversation's turns before the new message, newest first (the statement's snapshot does not see
    the message it inserts): what the worker's claim would read (store.worker), for a call rung claimed."""
    return f"""(
        SELECT json_agg(json_build_array(recent.role, recent.content) ORDER BY recent.created_at DESC, recent.id DESC)
        FROM (
            SELECT m.role, m.content, m.created_at, m.id FROM {quote(Message._meta.db_table)} m
            WHERE m.conversation_id = %(conversation)s
            ORDER BY m.created_at DESC, m.id DESC LIMIT %(earlier)s
        ) recent
    )"""  # noqa: S608 - the only interpolation is a quoted name from the model's _meta


def durable() -> None:
    """Wait until every commit so far is on disk (chat_accept's does not wait). PostgreSQL flushes the
    write-ahead log up to a transaction's commit when the transaction has an id; txid_current() gives this
    one an id, so its commit waits for everything committed before it."""
    db = postgresql()
    if db is not None and not db.in_atomic_block:
        fetch_one(db, "SELECT txid_current()", {})
