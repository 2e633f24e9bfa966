"""The HTTP side of provider calls: `provider_request` (one JSON exchange, every failure a ProviderError),
the connection pools a process uses, and a response reader with a size and time cap.

Provider calls, made for every message, go through urllib3 directly (`pool()`): requests builds a
PreparedRequest, merges session settings and cookies on every call, which doubled the client's CPU per
call (0.60 against 0.34 ms to the sandbox). Callbacks and WhatsApp sends keep requests' friendlier API
(`session()`). Either keeps TCP and TLS connections open between calls, which is most of the cost of a
short call. Celery's prefork pool forks workers after import, and a pool must not be shared across a
fork, so each process builds its own on first use.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import certifi
import requests
import urllib3
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter

from .errors import ErrorKind, ProviderError

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


# What an API key may hold to travel in a header: printable ASCII, no spaces.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]*")


# Every frame below this one (urllib3, http.client) holds the Authorization header: hide all their
# variables from Django's error reports.
@sensitive_variables()
def provider_request(
    method: str, url: str, api_key: str, body: dict[str, Any] | None, timeout: float
) -> tuple[int, str, Mapping[str, str]]:
    """One JSON exchange with a provider: (status, body text, case-insensitive headers), or ProviderError.

    No redirects, no retries (a retry is a new attempt), one deadline for the whole exchange, an error
    message that never quotes the key, and a body with the key redacted where the provider echoed it.
    """
    host = urlsplit(url).netloc
    if not _HEADER_SAFE.fullmatch(api_key):
        # http.client would refuse it with the whole header, key included, in its error message.
        raise ProviderError(
            ErrorKind.CONFIG,
            "The API key has a line break, a space or a character HTTP headers cannot carry: nothing was sent. "
            "Paste the key again.",
        )
    headers = {
        "Authorization": f"Bearer {api_key}",
        "Accept": "application/json",
        "Accept-Encoding": "gzip, deflate",
        "User-Agent": USER_AGENT,  # headers= replaces the pool's own, so every header is named here
    }
    payload = None
    if body is not None:
        try:
            payload = json.dumps(body, allow_nan=False).encode()
        except ValueError:
            raise ProviderError(
                ErrorKind.CONFIG, "A setting of this request is NaN or infinite, not a number: nothing was sent."
            ) from None
        headers["Content-Type"] = "application/json"
    deadline = time.monotonic() + timeout  # the whole exchange, not each read
    response = None
    try:
        response = pool().request(
            method,
            url,
            body=payload,
            headers=headers,
            timeout=urllib3.Timeout(connect=min(timeout, 10.0), read=timeout),
            redirect=False,  # a redirect could carry the key to another host
            preload_content=False,
        )
        raw = read_capped(response, deadline=deadline)
    # NewConnectionError is a ConnectTimeoutError in urllib3's family tree: it must be caught first.
    except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.SSLError) as exc:
        raise ProviderError(ErrorKind.NETWORK, f"Could not reach {host}: {_reason(exc)}.") from None
    except (urllib3.exceptions.TimeoutError, ResponseTooSlow):
        raise ProviderError(ErrorKind.TIMEOUT, f"No answer from {host} within {timeout:g} s.") from None
    except urllib3.exceptions.HTTPError as exc:  # e.g. the connection broke off in the middle of the body
        raise ProviderError(ErrorKind.NETWORK, f"The answer from {host} broke off ({type(exc).__name__}).") from None
    except OSError as exc:  # a socket error urllib3 did not wrap
        raise ProviderError(ErrorKind.NETWORK, f"Could not reach {host}: {_reason(exc)}.") from None
    except ValueError as exc:  # http.client refusing a header or URL: its message would quote the header
        raise ProviderError(ErrorKind.NETWORK, f"Could not send to {host} ({type(exc).__name__}).") from None
    except ResponseTooLarge as exc:
        raise ProviderError(ErrorKind.BAD_RESPONSE, str(exc), status=response.status) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProviderError(
            ErrorKind.BAD_RESPONSE,
            "The answer is not UTF-8 text, so it cannot be JSON. Check that the base URL points at the API.",
            status=response.status,
            body=_scrub(raw[:2000].decode("utf-8", errors="replace"), api_key),
        ) from None
    return response.status, _scrub(text, api_key), response.headers  # headers: a case-insensitive mapping


def _reason(exc: Exception) -> str:
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if known in text:
            return known.lower()
    if "Temporary failure in name resolution" in text or "nodename nor servname" in text:
        return "the host name does not resolve"
    return "the connection failed"


def _scrub(text: str, api_key: str) -> str:
    # Some gateways echo the key back in their error text.
    return text.replace(api_key, "[redacted]") if api_key and len(api_key) >= 4 else text
