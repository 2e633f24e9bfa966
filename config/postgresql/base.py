"""Django's PostgreSQL backend, with a pool health check that asks the socket before the server.

With CONN_HEALTH_CHECKS on, Django gives psycopg_pool its `check_connection`: an empty query, one round trip,
before every connection leaves the pool. A worker borrows a connection twice per call (it gives it back while
the provider thinks), so that was two round trips per call; skipping them took about a tenth of the worker's
CPU per call in the pipeline benchmark.

A pooled connection that the server closed (a restart, `pg_terminate_backend`, an idle timeout in a proxy)
always has something waiting on its socket: PostgreSQL's error message, or the end of the stream. So this
check looks at the socket first, without waiting, and runs the empty query only when something is there (a
closed connection then fails it and the pool opens another, as before). A healthy idle connection has nothing
to read and goes out at once. A connection cut without a word (a network partition) passes either check: its
first statement waits for TCP to notice.
"""

from __future__ import annotations

import select

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def check_connection(connection) -> None:
    """psycopg_pool's check, run only when the server has said something since the connection was returned."""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(connection)


class DatabaseWrapper(base.DatabaseWrapper):
    @property
    def pool(self):
        pool = super().pool
        # Django passes ConnectionPool.check_connection when CONN_HEALTH_CHECKS is on, and offers no way to
        # choose another; psycopg_pool keeps it in `_check` (tests/test_database_backend.py notices a change).
        if pool is not None and getattr(pool, "_check", None) is ConnectionPool.check_connection:
            pool._check = check_connection
        return pool


def standalone_params() -> dict:
    """psycopg.connect's arguments for a connection of one's own to the default database, outside the pool:
    Django's settings, without what only Django's own connections take."""
    params = connections[DEFAULT_DB_ALIAS].get_connection_params()
    for django_only in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(django_only, None)
    return params
