"""The one HTTP session a process uses for provider calls, and a response reader with a size cap.

A `requests.Session` keeps TCP and TLS connections open between calls, which is most of the cost of a
short provider call. Celery's prefork pool forks workers after import, and a session must not be shared
across a fork, so each process builds its own on first use.
"""

from __future__ import annotations

import os
import threading
import time

import requests
from requests.adapters import HTTPAdapter

USER_AGENT = "Switchboard/1.0 (+https://github.com/switchboard)"
# Answers past this size are refused rather than read into memory: no chat reply is this big.
MAX_RESPONSE_BYTES = 2 * 1024 * 1024

_lock = threading.Lock()
_session: requests.Session | None = None
_session_pid: int | None = None


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
    """The body kept trickling in past the deadline (requests' own timeout applies to each read only).

    Checked between reads, so a slow body is cut at the first read that ends past the deadline.
    """


def read_capped(response: requests.Response, limit: int = MAX_RESPONSE_BYTES, deadline: float | None = None) -> bytes:
    """The body of a streamed response; ResponseTooLarge past `limit` bytes, ResponseTooSlow past `deadline`."""
    chunks: list[bytes] = []
    size = 0
    try:
        # chunk_size=None yields whatever has arrived, so the deadline is checked while a body trickles in.
        for chunk in response.iter_content(chunk_size=None):
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(f"The answer is larger than {limit // 1024} KB and was not read.")
            if deadline is not None and time.monotonic() > deadline:
                raise ResponseTooSlow()
            chunks.append(chunk)
    finally:
        response.close()
    return b"".join(chunks)
