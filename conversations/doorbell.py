"""A call due now is rung through one Redis list that the workers block on, not through a Celery message.

Through Celery, a call's doorbell cost the web process kombu's publish and the worker Celery's consumer loop
and task tracing: a fifth of each process's CPU per relayed request, and a hop through the worker's event
loop before the call started. The doorbell carries one id and needs none of it: the call row is the record,
and the sweeper rings again for a doorbell lost (conversations/sweeper.py), as it does for a lost Celery
message. So the web pushes the call's id onto CALLS, and threads of each worker (Listener, a Celery
bootstep) take ids from that list, never more at once than the worker's `--concurrency`, each running the
call it took.

Only while a worker listens. Each listener keeps the LISTENING key alive; a process that finds no listener
(no worker started yet, or only workers of a version without this module, mid-upgrade) rings through Celery
as before, and a listening worker takes both. Calls due later (a burst's window, a retry's backoff) keep
Celery's countdown. Only workers of the threads pool listen (the pool the README runs): prefork and solo
workers take calls through Celery alone. `CALL_DOORBELL=false` turns the list off for a process: a worker
so started does not listen, a web process so started always rings through Celery.

A relayed API request's call is rung already claimed (CLAIMED, conversations/store/preclaimed.py): the web
inserts it running, with everything the worker's claim would have read, and the worker that pops it goes
straight to the provider; a statement fewer on the request's path. Workers that take such calls say so
(TAKING_CLAIMED), so that a web process never rings one where only older workers listen.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from urllib.parse import urlsplit

import redis
from celery import bootsteps, signals
from django.conf import settings

from connectors.ratelimit import redis_at

logger = logging.getLogger(__name__)

CALLS = "sb:calls"  # ids of calls due now, oldest first
CLAIMED = "sb:calls:claimed"  # calls the web inserted already claimed, with what the worker needs to run them
LISTENING = "sb:calls:listening"  # kept alive by every listening worker
TAKING_CLAIMED = "sb:calls:claimed:listening"  # kept alive by every listening worker that also pops CLAIMED
LISTENING_TTL = 15  # seconds: a worker gone this long no longer counts as listening
LOOK_AGAIN = 5.0  # seconds a process trusts what it last read of LISTENING
BLOCK = 1  # seconds a listener blocks on CALLS before it looks at its own state again

_listening: dict[str, tuple[float, bool, bool]] = {}  # broker URL -> (trusted until, listening, taking claimed)


def enabled() -> bool:
    """The list is used with a Redis broker (where the workers already are), unless CALL_DOORBELL says not."""
    scheme = urlsplit(settings.CELERY_BROKER_URL).scheme
    return settings.CALL_DOORBELL and scheme in ("redis", "rediss", "redis+socket", "unix")


def client() -> redis.Redis:
    return redis_at(settings.CELERY_BROKER_URL)


def listening() -> bool:
    """Whether some worker listens on CALLS (read at most every LOOK_AGAIN seconds per process)."""
    return _workers()[0]


def taking_claimed() -> bool:
    """Whether some worker also takes calls rung already claimed (CLAIMED)."""
    return _workers()[1]


def _workers() -> tuple[bool, bool]:
    if not enabled():
        return False, False
    url, now = settings.CELERY_BROKER_URL, time.monotonic()
    until, listens, takes = _listening.get(url, (0.0, False, False))
    if now < until:
        return listens, takes
    try:
        pipe = client().pipeline(transaction=False)
        pipe.exists(LISTENING)
        pipe.exists(TAKING_CLAIMED)
        listens, takes = (bool(n) for n in pipe.execute())
    except redis.RedisError:
        listens = takes = False  # Celery's publish reports the broker's trouble as it always has
    takes = listens and takes
    _listening[url] = (now + LOOK_AGAIN, listens, takes)
    return listens, takes


def ring(call_id: int) -> None:
    """Push the call's id for the next free worker. Raises redis.RedisError when Redis cannot take it."""
    client().rpush(CALLS, call_id)


class NotRung(redis.ConnectionError):
    """No connection to Redis could be made: the ring was never sent."""


def ring_claimed(packed: str) -> None:
    """Push a call inserted already claimed (store.preclaimed). Raises NotRung when Redis could not be reached
    (nothing was sent), another redis.RedisError when the push was sent and its outcome is unknown.

    The client's own `rpush` cannot tell the two apart; the pool can: it hands out a connection only once it
    is connected (and reconnects one Redis closed meanwhile), so a failure there is before anything is sent.
    """
    pool = client().connection_pool
    try:
        connection = pool.get_connection()
    except (redis.RedisError, OSError) as error:
        raise NotRung(str(error)) from error
    try:
        connection.send_command("RPUSH", CLAIMED, packed)
        connection.read_response()
    except BaseException:
        connection.disconnect()  # as the client does: a connection in an unknown state is not reused
        raise
    finally:
        pool.release(connection)


def waiting() -> int:
    """Doorbells no worker has taken yet (the sweeper reads them as part of the backlog)."""
    if not enabled():
        return 0
    pipe = client().pipeline(transaction=False)
    pipe.llen(CALLS)
    pipe.llen(CLAIMED)
    return sum(int(n) for n in pipe.execute())


def answer(call_id: int | bytes, worker: str) -> None:
    """Make the call, as the execute_call task does (conversations/tasks.py): a call id from CALLS, or a call
    rung already claimed from CLAIMED."""
    from django.db import close_old_connections

    from . import delivery

    try:
        close_old_connections()  # what Celery's Django fixup does around every task
        if isinstance(call_id, int):
            delivery.call_execute(call_id=call_id, worker=worker)
        else:
            delivery.call_execute_claimed(call_id, worker=worker)
    except Exception:  # the call keeps its state and the sweeper brings it back, as after a failed task
        logger.exception("call %s: its doorbell's run failed", call_id if isinstance(call_id, int) else "rung claimed")
    finally:
        close_old_connections()


class Listener:
    """Threads of its own, as many as the worker's `--concurrency`, that take ids from CALLS one thread at a
    time and run each on the thread that took it (leader and followers).

    The thread that pops an id runs it at once: no hand-over to another thread between Redis and the call,
    which cost a relayed request 0.15-0.2 ms of waiting at one client. Popping passes to the next free thread
    as soon as an id is taken, so one Redis connection blocks on CALLS per worker, and only a free thread
    ever pops: an id leaves Redis only when a thread is there to run it, so nothing taken waits in the
    worker's memory while other workers sit idle. Not the Celery pool's threads: Celery reserves those for
    the messages it takes. A warm shutdown stops taking and lets the calls already running finish.
    """

    def __init__(self, worker):
        self.hostname = worker.hostname or ""
        size = max(1, worker.concurrency or 1)
        self.popping = threading.Lock()  # held by the one free thread that blocks on CALLS
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._serve, name=f"call-{n}", daemon=True) for n in range(1, size + 1)]
        # LISTENING is renewed by a thread of its own: while every thread runs a long call, nobody pops, yet
        # the worker still listens (ids wait in Redis, where any worker can take them).
        self.keeper = threading.Thread(target=self._keep_marked, name="call-doorbell-mark", daemon=True)
        self.marked = 0.0  # when LISTENING was last renewed
        self.failing = False  # Redis refused the last pop (reported once until it answers again)
        self.lists = [CLAIMED, CALLS]  # which list a pop looks at first, swapped at every pop (popping held)

    def start(self) -> None:
        # Celery stops this step only after its own consumer has wound down (up to a couple of seconds);
        # its shutdown signal comes first, so that no call is taken once the worker was told to stop.
        signals.worker_shutting_down.connect(self._shutting_down, weak=False)
        self._mark()
        self.keeper.start()
        for thread in self.threads:
            thread.start()

    def _shutting_down(self, **kwargs) -> None:
        self.stopping.set()

    def stop(self) -> None:
        """Warm shutdown: take nothing more, and wait for the calls already taken."""
        self.stopping.set()
        for thread in self.threads:
            thread.join()
        self.keeper.join()
        self._unmark()

    def terminate(self) -> None:
        """Cold shutdown: the calls running end with the process (the sweeper brings them back)."""
        self.stopping.set()
        self._unmark()

    def _keep_marked(self) -> None:
        while not self.stopping.wait(1):
            self._mark()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            with self.popping:
                if self.stopping.is_set():  # stopped while waiting for its turn: take nothing more
                    break
                call_id = self._pop()
            if call_id is not None:  # the next free thread pops meanwhile
                answer(call_id, self.hostname)

    def _pop(self) -> int | bytes | None:
        """The next call rung claimed (from CLAIMED) or id (from CALLS), blocking up to BLOCK seconds; None if
        none came. The list looked at first alternates, so that neither waits while the other is busy."""
        self.lists.reverse()
        try:
            rung = client().blpop(self.lists, timeout=BLOCK)
        except redis.RedisError as error:
            if not self.failing:
                logger.warning("call doorbell: Redis unavailable (%s); trying again every second", error)
                self.failing = True
            self.stopping.wait(1)
            return None
        if self.failing:
            logger.warning("call doorbell: Redis answers again; listening on %s", CALLS)
            self.failing = False
        if rung is None:
            return None
        if rung[0] == CLAIMED.encode():
            return rung[1]
        try:
            return int(rung[1])
        except ValueError:
            logger.warning("call doorbell: dropped %r, not a call id", rung[1][:40])
            return None

    def _mark(self) -> None:
        now = time.monotonic()
        if now - self.marked < LISTENING_TTL / 3:
            return
        try:
            pipe = client().pipeline(transaction=False)
            pipe.set(LISTENING, self.hostname or "1", ex=LISTENING_TTL)
            pipe.set(TAKING_CLAIMED, self.hostname or "1", ex=LISTENING_TTL)
            pipe.execute()
            self.marked = now
        except redis.RedisError:
            pass  # the blocking pop reports Redis's trouble

    def _unmark(self) -> None:
        """Stopping: if this worker was the last to say it listens, say nothing, so that web processes ring
        through Celery within LOOK_AGAIN rather than LISTENING_TTL (another listener says so again shortly)."""
        with contextlib.suppress(redis.RedisError):
            for key in (LISTENING, TAKING_CLAIMED):
                if client().get(key) == self.hostname.encode():
                    client().delete(key)


class Step(bootsteps.StartStopStep):
    """Starts a Listener in every worker of the threads pool (config/celery.py adds this step), unless the
    doorbell is off. Workers of another pool (prefork, solo) keep taking calls through Celery only."""

    requires = {"celery.worker.components:Pool"}

    def include_if(self, worker) -> bool:
        from celery.concurrency.thread import TaskPool

        return enabled() and isinstance(worker.pool_cls, type) and issubclass(worker.pool_cls, TaskPool)

    def create(self, worker):
        return Listener(worker)
