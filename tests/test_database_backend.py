"""config/postgresql: pooled connections go out without a round trip, one the server closed is replaced, and
timestamps are read by psycopg's own loader, as the same instants in UTC."""

from __future__ import annotations

import datetime

import psycopg
import pytest
from django.db import connection as db
from django.db.backends.postgresql.base import TIMESTAMPTZ_OID

from config.postgresql.base import UtcTimestamptzLoader, standalone_params
from connectors.models import ProviderConnection
from conversations.store.sql import fetch_one, postgresql
from tests.factories import ConnectionFactory
from tests.helpers import wait_until

pytestmark = [
    pytest.mark.django_db(transaction=True),  # each borrow below is a real one from the pool
    pytest.mark.skipif(
        db.vendor != "postgresql" or not db.settings_dict["OPTIONS"].get("pool"),  # (db.pool would open it now)
        reason="the connection pool is PostgreSQL's",
    ),
]


@pytest.fixture(autouse=True)
def fresh_pool():
    """Each test starts from a new pool: an earlier test that ran many threads at once leaves more pooled
    connections than these borrow, and the pool hands its connections out in turn."""
    db.close()
    db.close_pool()
    yield


def _borrow_and_return(times: int) -> set[int]:
    """Take a connection from the pool and give it back, running nothing on it; their server process ids."""
    pids = set()
    for _ in range(times):
        db.ensure_connection()
        pids.add(db.connection.info.backend_pid)
        db.close()
    return pids


def _last_statements(pids: set[int]) -> dict[int, str]:
    """What each server process ran last, asked over a connection of its own (outside the pool)."""
    with psycopg.connect(**standalone_params(), autocommit=True) as other:
        rows = other.execute("SELECT pid, query FROM pg_stat_activity WHERE pid = ANY(%s)", [list(pids)]).fetchall()
    return dict(rows)


def test_a_healthy_pooled_connection_goes_out_without_a_round_trip():
    pids = _borrow_and_return(4)
    for pid in pids:  # mark each pooled connection with a statement of its own
        with db.cursor() as cursor:
            cursor.execute("SELECT %s::text AS marker", [f"marker {db.connection.info.backend_pid}"])
        db.close()
    _borrow_and_return(8)
    # psycopg_pool's own check would have run an empty query on each borrow, leaving '' as the last statement.
    assert all(query.startswith("SELECT") for query in _last_statements(pids).values())


def test_a_pooled_connection_the_server_closed_is_replaced_without_an_error():
    pids = _borrow_and_return(4)
    with psycopg.connect(**standalone_params(), autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [list(pids)])
        # pg_terminate_backend only signals: wait until the server processes have said goodbye and gone.
        wait_until(
            lambda: not other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ANY(%s)", [list(pids)]).fetchone(),
            10,
            "the terminated connections to go",
        )
    try:
        for _ in range(4):  # every connection the pool held is dead now; each borrow must still work
            with db.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                assert cursor.fetchone()[0] not in pids
            db.close()
    finally:
        db.close()  # never leave a dead connection to the next test


# A moment with microseconds, given in another zone: what comes back must be the same instant, in UTC.
WRITTEN = datetime.datetime(
    2024, 3, 31, 2, 30, 15, 123456, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=30))
)


def test_timestamps_come_back_as_the_same_instant_in_utc_through_the_orm_and_the_hand_written_statements():
    connection = ConnectionFactory()
    ProviderConnection.objects.filter(pk=connection.pk).update(created_at=WRITTEN)
    through_orm = ProviderConnection.objects.get(pk=connection.pk).created_at
    table = ProviderConnection._meta.db_table
    (through_statement,) = fetch_one(
        postgresql(),
        f"SELECT created_at FROM {table} WHERE id = %(id)s",
        {"id": connection.pk},  # noqa: S608
    )
    with db.cursor() as cursor:  # Django's own cursor: create_cursor keeps the connection's loader
        cursor.execute(f"SELECT created_at FROM {table} WHERE id = %s", [connection.pk])  # noqa: S608
        (through_cursor,) = cursor.fetchone()
    for value in (through_orm, through_statement, through_cursor):
        assert value == WRITTEN
        assert value.tzinfo is datetime.UTC
        assert value.isoformat() == "2024-03-30T21:00:15.123456+00:00"


def test_timestamps_are_parsed_by_psycopgs_own_loader():
    """Django's loader parses each timestamp in Python; the backend hands them to psycopg's own (C) one
    (config/postgresql/base.py has the figures)."""
    db.ensure_connection()
    loader = db.connection.adapters.get_loader(TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)
    assert loader is UtcTimestamptzLoader
    assert type(loader(TIMESTAMPTZ_OID, db.connection)._loader) is psycopg.adapters.get_loader(
        TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT
    )
