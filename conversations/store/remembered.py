"""The API's configuration reads, remembered between requests and forgotten the moment PostgreSQL says they
changed.

Every relayed request reads its token's integration (with its default connection) and, on chat completions,
the connection its `model` names if there is one; `/api/v1/messages` reads the template it names. A worker
reads the connection of each call rung claimed (`preclaimed`). Those rows change when someone edits an
integration, a connection or a template: a few times a day. Read from the
database they were two of a chat request's five statements, and a fifth of the web process's CPU per
request (docs/benchmarks.md).

How a remembered row stays right:
- Triggers (migration 0027) on the tables these reads come from NOTIFY `CHANNEL` in the statement that
  changes them. PostgreSQL delivers a notification when, and only if, that transaction commits, whoever
  made it: the dashboard, the admin, a shell, a migration, SQL typed by hand.
- A thread in each process that reads (`Watcher`) LISTENs on a connection of its own, once it has seen a
  notice of its own come back on it (through a pooler in transaction mode none would: then nothing is ever
  remembered). A notification, its connection breaking and its connection coming back each empty the
  process's memory. While it is not listening, nothing is remembered and every read goes to the database,
  as before this module.
- A read that began before an emptying is not kept (a generation number): a row read just before a change
  committed cannot outlive the notice of that change.
- A read does not wait for the watcher to be scheduled: under load the watcher thread can wait tens of
  milliseconds for the interpreter lock after its notice arrived (an outside test measured stale answers up
  to 57 ms after a commit). Each read looks at the watcher's socket itself, without waiting, and goes to the
  database while anything is waiting there unread or the watcher is taking it (`Memory.news`). What stays
  is PostgreSQL's own delivery, from the committing session to the listening ones, which races the
  commit's reply to its client: usually well under a millisecond, but an outside test on a loaded 2-core
  host saw notices written to the listener up to 64 ms after a commit made in psql. Changes through the
  dashboard, the admin or the ORM are forgotten by the process that made them at once (below); the test
  saw no stale answer in thousands of requests following those.
- No row is kept longer than MAX_AGE_SECONDS, announced or not: a change made with the triggers disabled
  by hand (`ALTER TABLE … DISABLE TRIGGER ALL`, as `pg_restore --disable-triggers` does) is obeyed within
  that.
- The process that made a change through the ORM forgets as soon as it commits, without waiting for the
  notice (`watch_changes`).
- A read inside a transaction (the test suite's, or ATOMIC_REQUESTS) goes to the database: it may be
  reading its own uncommitted change, which no notification announces yet.

Rows are kept as the database returned them (tuples, which no request can change); each request builds its
own model instances from them. PostgreSQL only: on other databases every read goes to the database.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Hashable

import psycopg
from django.db import transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from .sql import postgresql

logger = logging.getLogger(__name__)

CHANNEL = "switchboard_config"
APPLICATION_NAME = "switchboard config watcher"
PROBE = "watcher-probe:"  # a notice's payload when a watcher checks that notices reach it (not a change)
MAX_ENTRIES = 10_000  # past this the memory is emptied: a flood of unknown tokens cannot grow it without end
MAX_AGE_SECONDS = 5  # the longest a row is kept, announced or not (triggers disabled by hand, say)
LIVENESS_SECONDS = 2  # how often a quiet listening connection is checked: a stalled one is trusted this long at most
SLOW_CHECK_SECONDS = 1  # a liveness check slower than this is logged
STOP_CHECK_SECONDS = 0.5  # how long `stop()` may wait for the watcher to notice
RECONNECT_SECONDS = (0.5, 10)  # first and longest wait before listening again after the connection broke


class Memory:
    """Rows by key, the generation they belong to, and whether a watcher is listening (else none is used)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows: dict[Hashable, tuple | None] = {}
        self.generation = 0
        self.listening = False
        self.fd: int | None = None  # the watcher's socket while it listens
        self.pending = False  # the watcher is taking what arrived on it

    def news(self) -> bool:
        """Whether a notice may be on its way in: something waits on the watcher's socket unread (a closed
        or reused socket counts too: poll reports it), or the watcher is taking what arrived. The socket
        first: the watcher marks `pending` before it reads, so a notice read off the socket after this
        look is still seen by the check of `pending` that follows it."""
        fd = self.fd
        if fd is None:
            return True
        poller = select.poll()  # one per look: a poll object refuses to be used by two threads at once
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(0)) or self.pending

    def forget(self) -> None:
        with self.lock:
            self.generation += 1
            self.rows = {}

    def keep(self, key: Hashable, row: tuple | None, generation: int) -> None:
        with self.lock:
            if generation != self.generation:
                return  # emptied while this row was being read: it may predate the change
            if len(self.rows) >= MAX_ENTRIES:
                self.rows = {}
            self.rows[key] = row


memory = Memory()
_MISSING = object()


def read(key: Hashable, fetch: Callable[[], tuple | None]) -> tuple | None:
    """The row `fetch` reads from the database, from memory when it can be trusted there."""
    db = postgresql()
    if db is None or db.in_atomic_block or not _watching() or memory.news():
        return fetch()
    generation = memory.generation
    row = memory.rows.get(key, _MISSING)
    if row is not _MISSING:
        return row
    row = fetch()
    memory.keep(key, row, generation)
    return row


_watcher_lock = threading.Lock()
_watcher: Watcher | None = None


def _watching() -> bool:
    """Whether this process's watcher listens (it is started on the first read, in the process that reads:
    a thread does not survive the fork of a web server's worker processes)."""
    global _watcher
    if _watcher is None or _watcher.pid != os.getpid():
        with _watcher_lock:
            if _watcher is None or _watcher.pid != os.getpid():
                memory.listening = False
                memory.forget()
                _watcher = Watcher()
                _watcher.start()
    return memory.listening


class Watcher(threading.Thread):
    """LISTENs for CHANNEL on a connection of its own and empties the memory at each notification, and
    whenever it is not sure it would have heard one (connecting, connection lost)."""

    def __init__(self) -> None:
        super().__init__(name="switchboard-config-watcher", daemon=True)
        self.pid = os.getpid()
        self.stopping = threading.Event()

    def run(self) -> None:
        wait = RECONNECT_SECONDS[0]
        while not self.stopping.is_set():
            try:
                with _connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    if not self._hears(conn):
                        # A pooler in transaction mode (PgBouncer's) takes LISTEN and never passes a notice on.
                        logger.warning(
                            "configuration notices do not come back on %s's connection (a pooler in transaction "
                            "mode?); the API reads its configuration from the database on every request",
                            CHANNEL,
                        )
                        wait = RECONNECT_SECONDS[1]
                    else:
                        memory.forget()  # changes made while nobody listened
                        memory.fd = conn.fileno()
                        memory.listening = True
                        wait = RECONNECT_SECONDS[0]
                        try:
                            self._listen(conn)
                        finally:
                            memory.listening = False  # before the socket closes
                            memory.fd = None
            except (psycopg.Error, OSError) as error:
                logger.info("configuration notices unheard (%s); reading from the database meanwhile", error)
            except Exception:  # a bug here must not leave stale rows in use
                logger.exception("configuration watcher failed; reading from the database meanwhile")
            finally:
                memory.listening = False
                memory.forget()
            self.stopping.wait(wait)
            wait = min(wait * 2, RECONNECT_SECONDS[1])

    def _hears(self, conn: psycopg.Connection) -> bool:
        """Whether a notice sent now comes back on this connection (within a second)."""
        probe = f"{PROBE}{self.pid}:{time.monotonic()}"
        conn.execute("SELECT pg_notify(%s, %s)", [CHANNEL, probe])
        return any(notice.payload == probe for notice in conn.notifies(timeout=1))

    def _listen(self, conn: psycopg.Connection) -> None:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        checked = emptied = time.monotonic()
        while not self.stopping.is_set():
            if time.monotonic() - emptied > MAX_AGE_SECONDS:
                memory.forget()  # a change no trigger announced (triggers disabled by hand)
                emptied = time.monotonic()
            if poller.poll(STOP_CHECK_SECONDS * 1000):
                memory.pending = True  # readers go to the database until what arrived is taken
                try:
                    _take_notices(conn, 0)
                finally:
                    memory.pending = False
            if time.monotonic() - checked > LIVENESS_SECONDS:
                # Quiet for a while: still connected? Nothing is remembered while this check waits, so a
                # connection gone silent (no reply, no error) cannot leave rows in use for long.
                memory.listening = False
                began = time.monotonic()
                alarm = threading.Timer(SLOW_CHECK_SECONDS, _stalled)  # told while it lasts, not only after
                alarm.daemon = True
                alarm.start()
                try:
                    conn.execute("SELECT 1")
                finally:
                    alarm.cancel()
                _take_notices(conn, 0)  # any that arrived with the check's reply
                if time.monotonic() - began > SLOW_CHECK_SECONDS:
                    logger.warning(
                        "configuration watcher's connection answered after %.1f s; remembering again",
                        time.monotonic() - began,
                    )
                memory.listening = True
                checked = time.monotonic()


def _stalled() -> None:
    logger.warning(
        "configuration watcher's connection has not answered for %s s; the API reads its configuration from the "
        "database until it does",
        SLOW_CHECK_SECONDS,
    )


def _take_notices(conn: psycopg.Connection, seconds: float) -> None:
    """Wait up to `seconds` for notices; forget at each change (a watcher's probe is none)."""
    for notice in conn.notifies(timeout=seconds):
        if not notice.payload.startswith(PROBE):
            memory.forget()


def stop() -> None:
    """Stop this process's watcher and close its connection (before its database is dropped: the tests')."""
    global _watcher
    with _watcher_lock:
        watcher, _watcher = _watcher, None
    if watcher is not None and watcher.pid == os.getpid():
        watcher.stopping.set()
        watcher.join(timeout=5)
    memory.listening = False
    memory.forget()


def _connect() -> psycopg.Connection:
    """A connection of its own to the default database, not one of the pool's."""
    from config.postgresql.base import standalone_params

    params = standalone_params()
    params.setdefault("connect_timeout", 5)
    # A peer gone without a word (a network partition) is noticed by TCP within about half a minute.
    for option, value in (
        ("keepalives", 1),
        ("keepalives_idle", 10),
        ("keepalives_interval", 5),
        ("keepalives_count", 3),
    ):
        params.setdefault(option, value)
    params["application_name"] = APPLICATION_NAME  # how it shows in pg_stat_activity
    return psycopg.connect(**params, autocommit=True)


def forget_on_commit(sender, using: str | None = None, **kwargs) -> None:
    """A change this process made through the ORM: forget once it commits, without waiting for the notice
    (a request this process answers next must not be the one that arrives before it)."""
    transaction.on_commit(memory.forget, using=using)


def watch_changes() -> None:
    """Connect `forget_on_commit` to every save, delete and link change of the models whose rows are kept."""
    from connectors.models import ProviderConnection

    from ..models import Integration, PromptTemplate

    for model in (Integration, ProviderConnection, PromptTemplate):
        for signal in (post_save, post_delete):
            signal.connect(forget_on_commit, sender=model, dispatch_uid=f"remembered-{signal}-{model.__name__}")
    for through in (Integration.connections.through, Integration.templates.through):
        m2m_changed.connect(forget_on_commit, sender=through, dispatch_uid=f"remembered-{through.__name__}")
