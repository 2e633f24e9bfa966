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
from .models import Call, Conversation, Integration, Message, PromptTemplate


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


def template_allowed(integration: Integration, name: str) -> PromptTemplate | None:
    """The template called `name`, if this integration may use it."""
    db = _postgresql()
    if db is None:
        return integration.templates.filter(name=name).first()
    row = store.fetch_one(db, _template_sql(), {"name": name, "integration": integration.pk})
    return store.instance(db, PromptTemplate, _all(PromptTemplate), iter(row)) if row else None


def conversation_latest(
    integration: Integration, contact: str, template: PromptTemplate, connection: ProviderConnection
) -> Conversation | None:
    """The contact's latest conversation through this integration, template and connection, which are set on
    it (no query of their own when the message is rendered and the call queued)."""
    db = _postgresql()
    if db is None:
        found = Conversation.objects.filter(
            integration=integration, contact=contact, template=template, connection=connection
        )
        conversation = found.order_by("-updated_at").first()
    else:
        params = {"integration": integration.pk, "contact": contact, "template": template.pk}
        row = store.fetch_one(db, _conversation_sql(), {**params, "connection": connection.pk})
        conversation = store.instance(db, Conversation, _all(Conversation), iter(row)) if row else None
    if conversation is not None:
        conversation.integration, conversation.template, conversation.connection = integration, template, connection
    return conversation


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


def call_accept(conversation: Conversation, message: Message, call: Call, *, countdown: float | None = None) -> Call:
    """Save the queued `call` answering `message` in an existing `conversation` (and `message` with it when it
    is not saved yet), move the conversation up the lists, and ring the workers once that commits (after
    `countdown` seconds). Every way a call is queued comes here: the API, WhatsApp, the console, test runs."""
    db = _postgresql()
    message.conversation = call.conversation = conversation
    if db is None:
        return _call_accept_orm(conversation, message, call, countdown)
    new_message = message._state.adding
    params = {"conversation": conversation.pk, "message": message.pk}
    params["touched_at"] = Conversation._meta.get_field("updated_at").pre_save(conversation, False)
    rows = [("k_", call, _fields(Call))] + ([("m0_", message, _fields(Message))] if new_message else [])
    for prefix, instance, fields in rows:
        for field in fields:
            params[f"{prefix}{field.attname}"] = field.get_db_prep_save(field.pre_save(instance, True), db)
    message_id, call_id = store.fetch_one(db, _call_sql(new_message), params)
    message.pk, call.pk, call.message = message_id, call_id, message
    for instance in (message, call):
        instance._state.adding, instance._state.db = False, db.alias
    queue.publish_on_commit(queue.EXECUTE_CALL, call.pk, countdown=countdown)
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


def _insert_columns(model, *linked: str) -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return ", ".join([*(q(c) for c in linked), *(q(f.column) for f in _fields(model))])


def _insert_values(model, prefix: str, *linked: str) -> str:
    """One row of parameters named `prefix` + attname, after the `linked` SQL expressions."""
    return "(" + ", ".join([*linked, *(f"%({prefix}{f.attname})s" for f in _fields(model))]) + ")"


@cache
def _accept_sql(message_count: int) -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    columns, values = _insert_columns, _insert_values

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


def _may_use(relation: str) -> tuple[str, str, str]:
    """The quoted table of an integration's many-to-many `relation`, its integration and its other column."""
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    field = Integration._meta.get_field(relation)
    return q(field.m2m_db_table()), q(field.m2m_column_name()), q(field.m2m_reverse_name())


@cache
def _named_sql() -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    through, integration, connection = _may_use("connections")
    return f"""
        SELECT {_columns("cn", ProviderConnection)}, EXISTS (
            SELECT 1 FROM {through} may
            WHERE may.{integration} = %(integration)s AND may.{connection} = cn.id
        )
        FROM {q(ProviderConnection._meta.db_table)} cn
        WHERE cn.name = %(name)s
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


@cache
def _template_sql() -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    through, integration, template = _may_use("templates")
    return f"""
        SELECT {_columns("pt", PromptTemplate)} FROM {q(PromptTemplate._meta.db_table)} pt
        JOIN {through} may ON may.{template} = pt.id AND may.{integration} = %(integration)s
        WHERE pt.name = %(name)s
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


@cache
def _conversation_sql() -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return f"""
        SELECT {_columns("cv", Conversation)} FROM {q(Conversation._meta.db_table)} cv
        WHERE cv.integration_id = %(integration)s AND cv.contact = %(contact)s AND cv.template_id = %(template)s
            AND cv.connection_id = %(connection)s
        ORDER BY cv.updated_at DESC LIMIT 1
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


@cache
def _latest_sql() -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    return f"""
        SELECT {_columns("c", Call)} FROM {q(Call._meta.db_table)} c
        WHERE c.message_id = %(message)s ORDER BY c.attempt DESC LIMIT 1
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


@cache
def _call_sql(new_message: bool) -> str:
    q = connections[DEFAULT_DB_ALIAS].ops.quote_name
    message_id = "(SELECT id FROM turn)" if new_message else "%(message)s"
    turn = (
        f"""turn AS (
            INSERT INTO {q(Message._meta.db_table)} ({_insert_columns(Message, "conversation_id")})
            VALUES {_insert_values(Message, "m0_", "%(conversation)s")}
            RETURNING id
        ),"""  # noqa: S608 - quoted names from the models' _meta and parameter names
        if new_message
        else ""
    )
    conversation = q(Conversation._meta.db_table)
    return f"""
        WITH {turn} queued AS (
            INSERT INTO {q(Call._meta.db_table)} ({_insert_columns(Call, "conversation_id", "message_id")})
            VALUES {_insert_values(Call, "k_", "%(conversation)s", message_id)}
            RETURNING id
        ), touched AS (
            UPDATE {conversation} SET updated_at = %(touched_at)s WHERE id = %(conversation)s
        )
        SELECT {message_id}, (SELECT id FROM queued)
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta and parameter names
