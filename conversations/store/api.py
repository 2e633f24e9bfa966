"""The API's reads, one hand-written statement each on PostgreSQL.

Every relayed request (`/api/v1/chat/completions`, `/api/v1/messages`) reads its token's integration, what its
request names (a connection by `model`, a template by name, the contact's conversation) and, once the worker
rings, the outcome. The ORM built each query anew per request: 0.4 to 0.9 ms of the web process's CPU each,
most of what a relayed request cost it (docs/benchmarks.md, `python -m bench --only relay`). Bound on the
server, each statement is planned once per connection.

The token's, the named connection's and the template's rows are remembered between requests until a change
to them commits (`remembered`): most requests read none of them from the database.

Other databases (SQLite for `make run`) read the same through the ORM; the test suite runs on both.
"""

from __future__ import annotations

from functools import cache

from django.db.models import Exists, OuterRef

from connectors.models import ProviderConnection

from ..models import Call, Conversation, Integration, PromptTemplate
from . import remembered
from .sql import all_fields, columns, fetch_one, instance, postgresql, quote


def integration_by_token(token_hash: str) -> Integration | None:
    """The integration with this token hash, with its default connection loaded, and `default_allowed`: whether
    that connection is still one it may use (a connection taken off the integration may still be its default)."""
    db = postgresql()
    if db is None:
        may_use = Integration.connections.through.objects.filter(
            integration_id=OuterRef("pk"), providerconnection_id=OuterRef("default_connection_id")
        )
        found = Integration.objects.filter(token_hash=token_hash).select_related("default_connection")
        return found.annotate(default_allowed=Exists(may_use)).first()
    row = remembered.read(("token", token_hash), lambda: fetch_one(db, _token_sql(), {"hash": token_hash}))
    if row is None:
        return None
    values = iter(row)
    integration = instance(db, Integration, all_fields(Integration), values)
    default = instance(db, ProviderConnection, all_fields(ProviderConnection), values)
    integration.default_connection = default if default.pk is not None else None
    integration.default_allowed = bool(next(values))
    return integration


def connection_named(name: str, integration: Integration) -> tuple[ProviderConnection | None, bool]:
    """The connection called `name` (or None), and whether `integration` may use it."""
    db = postgresql()
    if db is None:
        may_use = Integration.connections.through.objects.filter(
            integration_id=integration.pk, providerconnection_id=OuterRef("pk")
        )
        named = ProviderConnection.objects.filter(name=name).annotate(allowed=Exists(may_use)).first()
        return named, bool(named and named.allowed)
    params = {"name": name, "integration": integration.pk}
    row = remembered.read(("connection", name, integration.pk), lambda: fetch_one(db, _named_sql(), params))
    if row is None:
        return None, False
    values = iter(row)
    return instance(db, ProviderConnection, all_fields(ProviderConnection), values), bool(next(values))


def template_allowed(integration: Integration, name: str) -> PromptTemplate | None:
    """The template called `name`, if this integration may use it."""
    db = postgresql()
    if db is None:
        return integration.templates.filter(name=name).first()
    params = {"name": name, "integration": integration.pk}
    row = remembered.read(("template", name, integration.pk), lambda: fetch_one(db, _template_sql(), params))
    return instance(db, PromptTemplate, all_fields(PromptTemplate), iter(row)) if row else None


def contact_lock(integration: Integration, contact: str) -> None:
    """Hold one contact's messages through this integration one at a time until the caller's transaction ends:
    two first messages arriving together would otherwise each start a conversation. On PostgreSQL a
    transaction-level advisory lock on (integration, contact) (taken before the look-up: a statement reads
    what was committed when it began); SQLite's transactions take the write lock up front (IMMEDIATE) and so
    already run one at a time."""
    db = postgresql()
    if db is not None:
        assert db.in_atomic_block, "the lock lasts as long as a transaction: take it inside one"  # noqa: S101
        # One bigint key: the contact's hash seeded with the integration's id (an id is any bigint).
        fetch_one(db, "SELECT pg_advisory_xact_lock(hashtextextended(%(contact)s, %(integration)s))", {
            "integration": integration.pk, "contact": contact,
        })  # fmt: skip


def conversation_latest(
    integration: Integration, contact: str, template: PromptTemplate, connection: ProviderConnection
) -> Conversation | None:
    """The contact's latest conversation through this integration, template and connection, which are set on
    it (no query of their own when the message is rendered and the call queued)."""
    db = postgresql()
    if db is None:
        found = Conversation.objects.filter(
            integration=integration, contact=contact, template=template, connection=connection
        )
        conversation = found.order_by("-updated_at").first()
    else:
        params = {"integration": integration.pk, "contact": contact, "template": template.pk}
        row = fetch_one(db, _conversation_sql(), {**params, "connection": connection.pk})
        conversation = instance(db, Conversation, all_fields(Conversation), iter(row)) if row else None
    if conversation is not None:
        conversation.integration, conversation.template, conversation.connection = integration, template, connection
    return conversation


def latest_attempt(call: Call) -> Call:
    """The newest attempt at answering `call`'s customer message (this call, or a retry or fallback of it)."""
    db = postgresql()
    if db is None:
        return call.latest_attempt()
    row = fetch_one(db, _latest_sql(), {"message": call.message_id})
    return instance(db, Call, all_fields(Call), iter(row)) if row else call


# --- PostgreSQL ------------------------------------------------------------------------------------


@cache
def _token_sql() -> str:
    through, integration, connection = _may_use("connections")
    return f"""
        SELECT {columns("ig", Integration)}, {columns("cn", ProviderConnection)}, EXISTS (
            SELECT 1 FROM {through} may WHERE may.{integration} = ig.id AND may.{connection} = cn.id
        )
        FROM {quote(Integration._meta.db_table)} ig
        LEFT JOIN {quote(ProviderConnection._meta.db_table)} cn ON cn.id = ig.default_connection_id
        WHERE ig.token_hash = %(hash)s
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


def _may_use(relation: str) -> tuple[str, str, str]:
    """The quoted table of an integration's many-to-many `relation`, its integration and its other column."""
    field = Integration._meta.get_field(relation)
    return quote(field.m2m_db_table()), quote(field.m2m_column_name()), quote(field.m2m_reverse_name())


@cache
def _named_sql() -> str:
    through, integration, connection = _may_use("connections")
    return f"""
        SELECT {columns("cn", ProviderConnection)}, EXISTS (
            SELECT 1 FROM {through} may
            WHERE may.{integration} = %(integration)s AND may.{connection} = cn.id
        )
        FROM {quote(ProviderConnection._meta.db_table)} cn
        WHERE cn.name = %(name)s
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


@cache
def _template_sql() -> str:
    through, integration, template = _may_use("templates")
    return f"""
        SELECT {columns("pt", PromptTemplate)} FROM {quote(PromptTemplate._meta.db_table)} pt
        JOIN {through} may ON may.{template} = pt.id AND may.{integration} = %(integration)s
        WHERE pt.name = %(name)s
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


@cache
def _conversation_sql() -> str:
    return f"""
        SELECT {columns("cv", Conversation)} FROM {quote(Conversation._meta.db_table)} cv
        WHERE cv.integration_id = %(integration)s AND cv.contact = %(contact)s AND cv.template_id = %(template)s
            AND cv.connection_id = %(connection)s
        ORDER BY cv.updated_at DESC LIMIT 1
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


@cache
def _latest_sql() -> str:
    return f"""
        SELECT {columns("c", Call)} FROM {quote(Call._meta.db_table)} c
        WHERE c.message_id = %(message)s ORDER BY c.attempt DESC LIMIT 1
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta
