"""The HTTP connection pools a process uses, and a response reader with a size and time cap.

Provider calls, made for every message, go through urllib3 directly (`pool()`): requests builds a
PreparedRequest, merges session settings and cookies on every call, which doubled the client's CPU per
call (0.60 against 0.34 ms to the sandbox). Callbacks and WhatsApp sends keep requests' friendlier API
(`session()`). Either keeps TCP and TLS connections open between calls, which is most of the cost of a
short call. Celery's prefork pool forks workers after import, and a pool must not be shared across a
fork, so each process builds its own on first use.
"""

from __future__ import annotations

import os
import threading
import time

import certifi
import requests
import urllib3
from requests.adapters import HTTPAdapter

USER_AGENT = "Switchboard/1.0 (+https://github.com/switchboard)"
# Answers past this size are refused rather than read into memory: no chat reply is this big.
MAX_RESPONSE_BYTES = 2 * 1024 * 1024

_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid: int | None = None
_pool: urllib3.PoolManager | None = None
_pool_pid: int | None = None


def pool() -> urllib3.PoolManager:
    """Connections to providers: no retries (Switchboard retries as a new attempt), no proxy from the
    environment (urllib3 reads none), sized for a threaded worker keeping many calls in flight."""
    global _pool, _pool_pid
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            # certifi's CA bundle, as requests uses: the same providers are trusted on every machine.
            _pool = urllib3.PoolManager(num_pools=8, maxsize=256, retries=False, ca_certs=certifi.where())
            _pool_pid = os.getpid()
        return _pool


def session() -> requests.Session:
    global _session, _session_pid
    with _lock:
        if _session is None or _session_pid != os.getpid():
            s = requests.Session()
            # Sized for a threaded worker keeping many calls in flight to one provider host.
            adapter = HTTPAdapter(pool_connections=8, pool_maxsize=256, max_retries=0)
            s.mount("https://", adapter)
            s.mount("http://", adapter)
            s.headers["User-Agent"] = USER_AGENT
            s.trust_env = False  # a stray HTTPS_PROXY in a worker's environment must not reroute keys
            _session, _session_pid = s, os.getpid()
        return _session


class ResponseTooLarge(Exception):
    pass


class ResponseTooSlow(Exception):
    """The body kept trickling in past the deadline (the read timeout applies to each read only).

    Checked between reads, so a slow body is cut at the first read that ends past the deadline.
    """


def read_capped(
    response: urllib3.BaseHTTPResponse, limit: int = MAX_RESPONSE_BYTES, deadline: float | None = None
) -> bytes:
    """The body of an unread response; ResponseTooLarge past `limit` bytes, ResponseTooSlow past `deadline`."""
    chunks: list[bytes] = []
    size = 0
    try:
        declared = response.headers.get("Content-Length", "")
        if declared.isdecimal() and declared.isascii() and int(declared) > limit:
            raise ResponseTooLarge(f"The answer is larger than {limit // 1024} KB and was not read.")
        # At most 64 KB at a time, and each piece of a chunked body as it arrives: the size is checked
        # before a big body is in memory, the deadline while a slow one trickles in.
        for chunk in response.stream(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(f"The answer is larger than {limit // 1024} KB and was not read.")
            if deadline is not None and time.monotonic() > deadline:
                raise ResponseTooSlow()
            chunks.append(chunk)
    except BaseException:
        response.close()  # never hand a half-read connection back to the pool: close it, then free the slot
        response.release_conn()
        raise
    response.release_conn()
    return b"".join(chunks)
