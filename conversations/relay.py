"""The drop-in endpoint's trips to the database, one statement each on PostgreSQL.

A relayed chat request (`/api/v1/chat/completions`) reads its token's integration, maybe the connection its
`model` names, writes a new conversation with its messages and queued call, and reads the call's outcome once
the worker rings. The ORM builds each query anew per request, which was most of the web process's CPU per
relayed request (docs/benchmarks.md, `python -m bench --only relay`); as in `store` (the worker's side), on
PostgreSQL each trip is a hand-written statement bound on the server, so it is planned once per connection:

- the token: the integration joined with its default connection;
- the model: the connection of that name, and whether this integration may use it;
- the accept: the conversation, its messages and the queued call as data-modifying CTEs, atomic on their own
  (a transaction of five statements through the ORM: BEGIN, three INSERTs, COMMIT);
- the outcome: the newest attempt at answering the message.

Rows are the models' own: column lists come from `_meta` (a new field needs no change here), and the accept
saves unsaved instances the caller built, so defaults and `auto_now` apply as the ORM would apply them. Other
databases (SQLite for `make run`) take the same steps through the ORM; the test suite runs on both.

The call is rung once its rows are committed: at once after the statement in autocommit (the web's case),
or when the transaction around it commits.
"""

from __future__ import annotations

from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Exists, OuterRef

from connectors.models import ProviderConnection

from . import queue, store
from .models import Call, Conversation, Integration, Message


def _postgresql():
    db = connections[DEFAULT_DB_ALIAS]  # once: each attribute of django.db.connection is a lookup
    return db if db.vendor == "postgresql" else None


def integration_by_token(token_hash: str) -> Integration | None:
    """The integration with this token hash, with its default connection loaded."""
    db = _postgresql()
    if db is None:
        return Integration.objects.filter(token_hash=token_hash).select_related("default_connection").first()
    row = store.fetch_one(db, _token_sql(), {"hash": token_hash})
    if row is None:
        return None
    values = iter(row)
    integration = store.instance(db, Integration, _all(Integration), values)
    default = store.instance(db, ProviderConnection, _all(ProviderConnection), values)
    integration.default_connection = default if default.pk is not None else None
    return integration


def connection_named(name: str, integration: Integration) -> tuple[ProviderConnection | None, bool]:
    """The connection called `name` (or None), and whether `integration` may use it."""
    db = _postgresql()
    if db is None:
        may_use = Integration.connections.through.objects.filter(
            integration_id=integration.pk, providerconnection_id=OuterRef("pk")
        )
        named = ProviderConnection.objects.filter(name=name).annotate(allowed=Exists(may_use)).first()
        return named, bool(named and named.allowed)
    row = store.fetch_one(db, _named_sql(), {"name": name, "integration": integration.pk})
    if row is None:
        return None, False
    values = iter(row)
    return store.instance(db, ProviderConnection, _all(ProviderConnection), values), bool(next(values))


def latest_attempt(call: Call) -> Call:
    """The newest attempt at answering `call`'s customer message (this call, or a retry or fallback of it)."""
    db = _postgresql()
    if db is None:
        return call.latest_attempt()
    row = store.fetch_one(db, _latest_sql(), {"message": call.message_id})
    return store.instance(db, Call, _all(Call), iter(row)) if row else call


# A chat request with more messages than this is saved through the ORM (in batches): each message is seven
# parameters of the statement (PostgreSQL takes at most 65,535), and each count is a statement of its own to
# prepare. Relayed histories are usually a few turns.
ONE_STATEMENT_MESSAGES = 50


def chat_accept(conversation: Conversation, messages: list[Message], call: Call) -> Call:
    """Save a new conversation, its `messages` in order (the last is the one `call` answers) and the queued
    `call`; ring the workers. Returns `call`, saved, with its conversation and message set."""
    db = _postgresql()
    if db is None or len(messages) > ONE_STATEMENT_MESSAGES:
        return _accept_orm(conversation, messages, call)
    params = {}
    for prefix, instance, fields in _rows(conversation, messages, call):
        for field in fields:
            params[f"{prefix}{field.attname}"] = field.get_db_prep_save(field.pre_save(instance, True), db)
    conversation_id, message_id, call_id = store.fetch_one(db, _accept_sql(len(messages)), params)
    conversation.pk = conversation_id
    for message in messages:
        message.conversation = conversation
    messages[-1].pk = message_id  # the others' ids are not needed: the worker reads the history itself
    call.pk, call.conversation, call.message = call_id, conversation, messages[-1]
    for instance in (conversation, messages[-1], call):
        instance._state.adding, instance._state.db = False, db.alias  # as if loaded: in the database now
    queue.publish_on_commit(queue.EXECUTE_CALL, call.pk)  # at once, unless a caller's transaction holds it
    return call


def _accept_orm(conversation: Conversation, messages: list[Message], call: Call) -> Call:
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


# Columns the statement fills from the rows it inserts, not from parameters.
_LINKED = {Message: ("conversation",), Call: ("conversation", "message")}


@cache
def _fields(model) -> list:
    """The columns of `model` that are parameters: all but the id and the links to the rows made with it."""
    return [f for f in model._meta.concrete_fields if not f.primary_key and f.name not in _LINKED.get(model, ())]


def _rows(conversation: Conversation, messages: list[Message], call: Call):
    yield "c_", conversation, _fields(Conversation)
    for n, message in enumerate(messages):
        yield f"m{n}_", message, _fields(Message)
    yield "k_", call, _fields(Call)


@cache
def _accept_sql(message_count: int) -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name

    def columns(model, *linked: str) -> str:
        return ", ".join([*(q(c) for c in linked), *(q(f.column) for f in _fields(model))])

    def values(model, prefix: str, *linked: str) -> str:
        return "(" + ", ".join([*linked, *(f"%({prefix}{f.attname})s" for f in _fields(model))]) + ")"

    conversation_id = "(SELECT id FROM conversation)"
    rows = ", ".join(values(Message, f"m{n}_", conversation_id) for n in range(message_count))
    # The messages go in as one multi-row VALUES, inserted (and numbered) in the order written: the worker
    # reads a conversation's history up to its call's message by id. The call reads `turns`, so it is
    # inserted after them; its message is the last of them.
    return f"""
        WITH conversation AS (
            INSERT INTO {q(Conversation._meta.db_table)} ({columns(Conversation)})
            VALUES {values(Conversation, "c_")}
            RETURNING id
        ), turns AS (
            INSERT INTO {q(Message._meta.db_table)} ({columns(Message, "conversation_id")})
            VALUES {rows}
            RETURNING id
        ), queued AS (
            INSERT INTO {q(Call._meta.db_table)} ({columns(Call, "conversation_id", "message_id")})
            VALUES {values(Call, "k_", conversation_id, "(SELECT max(id) FROM turns)")}
            RETURNING id
        )
        SELECT {conversation_id}, (SELECT max(id) FROM turns), (SELECT id FROM queued)
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta and parameter names


@cache
def _all(model) -> list:
    return list(model._meta.concrete_fields)


def _columns(alias: str, model) -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return ", ".join(f"{alias}.{q(f.column)}" for f in _all(model))


@cache
def _token_sql() -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return f"""
        SELECT {_columns("ig", Integration)}, {_columns("cn", ProviderConnection)}
        FROM {q(Integration._meta.db_table)} ig
        LEFT JOIN {q(ProviderConnection._meta.db_table)} cn ON cn.id = ig.default_connection_id
        WHERE ig.token_hash = %(hash)s
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


@cache
def _named_sql() -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    through = Integration.connections.through._meta.db_table
    return f"""
        SELECT {_columns("cn", ProviderConnection)}, EXISTS (
            SELECT 1 FROM {q(through)} may
            WHERE may.integration_id = %(integration)s AND may.providerconnection_id = cn.id
        )
        FROM {q(ProviderConnection._meta.db_table)} cn
        WHERE cn.name = %(name)s
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


@cache
def _latest_sql() -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return f"""
        SELECT {_columns("c", Call)} FROM {q(Call._meta.db_table)} c
        WHERE c.message_id = %(message)s ORDER BY c.attempt DESC LIMIT 1
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta
