"""What the hand-written statements share: running one with server-side binding, rows back into model
instances, and column lists from the models' `_meta` (a new field needs no change in any statement)."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from functools import cache

import psycopg
from django.db import DEFAULT_DB_ALIAS, NotSupportedError, connections

from ..models import Call, Message


def postgresql():
    """The default database's connection when it is PostgreSQL (the statements are PostgreSQL's), else None."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each attribute of django.db.connection is a lookup
    return db if db.vendor == "postgresql" else None


def quote(name: str) -> str:
    return connections[DEFAULT_DB_ALIAS].ops.quote_name(name)


def fetch_one(db, sql: str, params: dict) -> tuple | None:
    """Run a statement with server-side binding and return its row.

    Django's own cursors bind parameters on the client, so PostgreSQL parses and plans every query anew.
    Bound on the server, psycopg prepares a statement on each pooled connection once and then only sends
    the parameters (settings.DATABASE_PREPARED_STATEMENTS): PostgreSQL's CPU per call halves.
    """
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    try:
        return _execute(db, sql, params)
    except NotSupportedError as error:
        if getattr(error.__cause__, "sqlstate", None) != "0A000":
            raise
        # "cached plan must not change result type": a migration changed a column these prepared
        # statements read while this process ran. Inside a transaction the error has aborted it and nothing
        # more can run there: the request fails this once with the real error (psycopg then prepares the
        # statement anew; tests/conversations/test_store.py). In autocommit (a worker), forget this
        # connection's prepared statements (psycopg sees the DEALLOCATE and empties its own cache) and run the
        # statement once more.
        if db.in_atomic_block:
            raise
        with db.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
        return _execute(db, sql, params)


def _execute(db, sql: str, params: dict) -> tuple | None:
    raw = psycopg.Cursor(db.connection)
    with db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def instance(db, model, fields, values):
    """A model instance from raw column values, converted the way the ORM would (JSON text → objects)."""
    converted = []
    for field in fields:
        value = next(values)
        if value is not None and hasattr(field, "from_db_value"):
            value = field.from_db_value(value, None, db)
        converted.append(value)
    return model.from_db(db.alias, [f.attname for f in fields], converted)


@cache
def all_fields(model) -> list:
    return list(model._meta.concrete_fields)


def columns(alias: str, model) -> str:
    """Every column of `model`, qualified by `alias`, in `all_fields` order (what `instance` reads back)."""
    return ", ".join(f"{alias}.{quote(f.column)}" for f in all_fields(model))


# Columns an INSERT fills from the rows it inserts with it, not from parameters.
_LINKED = {Message: ("conversation",), Call: ("conversation", "message")}


@cache
def insert_fields(model) -> list:
    """The columns of `model` that are parameters: all but the id and the links to the rows made with it."""
    return [f for f in model._meta.concrete_fields if not f.primary_key and f.name not in _LINKED.get(model, ())]


def insert_columns(model, *linked: str) -> str:
    return ", ".join([*(quote(c) for c in linked), *(quote(f.column) for f in insert_fields(model))])


def insert_values(model, prefix: str, *linked: str) -> str:
    """One row of parameters named `prefix` + attname, after the `linked` SQL expressions."""
    return "(" + ", ".join([*linked, *(f"%({prefix}{f.attname})s" for f in insert_fields(model))]) + ")"


def insert_params(db, prefix: str, instance, params: dict) -> None:
    """The values of an unsaved `instance` as an INSERT takes them, defaults and `auto_now` applied as the ORM
    would apply them."""
    for field in insert_fields(type(instance)):
        params[f"{prefix}{field.attname}"] = field.get_db_prep_save(field.pre_save(instance, True), db)


def row_json(instance, leave_out: frozenset[str] = frozenset()) -> dict:
    """The columns an instance holds (a deferred one is not in `__dict__`), but `leave_out`, as JSON values:
    what travels through Redis with a doorbell or a wake-up, read back by `row_instance`."""
    return {
        field.attname: _json_value(getattr(instance, field.attname))
        for field in instance._meta.concrete_fields
        if field.attname in instance.__dict__ and field.name not in leave_out
    }


def _json_value(value: object) -> object:
    """Datetimes in full (DjangoJSONEncoder would cut them to milliseconds) and decimals as text; the rest as
    json takes it (a JSON field's value is already plain data)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def row_instance(model, held: dict):
    """An instance from `row_json`'s columns, as if loaded from the database (columns left out are deferred).
    Raises ValueError, TypeError, LookupError or ValidationError for something that is not such a row."""
    fields = [field for field in model._meta.concrete_fields if field.attname in held]
    return model.from_db(DEFAULT_DB_ALIAS, [f.attname for f in fields], [f.to_python(held[f.attname]) for f in fields])


def turns(value) -> list[tuple[str, str]]:
    """A statement's json_agg of (role, content) pairs as tuples; psycopg hands json as text or parsed, by
    type, and NULL when there were none."""
    if isinstance(value, str):
        value = json.loads(value)
    return [(role, content) for role, content in value or []]


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
