"""Django's PostgreSQL backend, with a pool health check that asks the socket before the server, and
timestamps read at psycopg's C speed.

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

Timestamps: Django reads every `timestamptz` through a loader that subclasses psycopg's pure-Python one
(to set the time zone afterwards), so each value is parsed in Python even where psycopg's C extension is
installed. A statement of ten timestamps took 105 us of CPU that way and 38 us through psycopg's own loader;
fifty calls with their conversation and connection, as the Calls page lists them, 3.6 ms and 2.4 ms. With
Django's connection time zone UTC (USE_TZ, no DATABASES TIME_ZONE) psycopg's loader gives the same values:
Django sets the session's time zone to it on every connection, so they come aware, in
`datetime.timezone.utc` (tests/test_database_backend.py). Any other zone keeps Django's loader.
"""

from __future__ import annotations

import datetime
import select

import psycopg
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.postgresql import base
from psycopg.adapt import AdaptersMap, Loader
from psycopg_pool import ConnectionPool

# psycopg's own text loader for timestamptz: its C implementation when psycopg[binary] or psycopg[c] is installed.
_PSYCOPG_LOADER = psycopg.adapters.get_loader(base.TIMESTAMPTZ_OID, psycopg.pq.Format.TEXT)


class UtcTimestamptzLoader(Loader):
    """psycopg's loader behind the `timezone` attribute Django's create_cursor compares with its connection's
    zone (a C class takes no subclass, and has no such attribute)."""

    timezone = datetime.UTC

    def __init__(self, oid, context=None):
        super().__init__(oid, context)
        self._loader = _PSYCOPG_LOADER(oid, context)

    def load(self, data):
        return self._loader.load(data)


def check_connection(connection) -> None:
    """psycopg_pool's check, run only when the server has said something since the connection was returned."""
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(connection)


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self):
        params = super().get_connection_params()
        if self.timezone is datetime.UTC and "context" in params:
            context = AdaptersMap(params["context"])  # a copy: Django shares its template between connections
            context.register_loader("timestamptz", UtcTimestamptzLoader)
            params["context"] = context
        return params

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
