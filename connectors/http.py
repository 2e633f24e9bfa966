"""The one HTTP transport for everything Switchboard sends out: provider calls, model lists, callbacks and
the WhatsApp Graph API.

Guarantees, and how they are kept:
- Every request goes only where connectors/safety.py allowed: `outbound_request` asks it for the URL's
  destination (the addresses the host resolved to, each checked), then connects to one of those
  addresses itself, with the host name in the Host header, in SNI and in the certificate check. urllib3
  never resolves the name again, so an answer that changes between the check and the connection (DNS
  rebinding) cannot send a request inside our network.
- No redirects (one could carry a key to another host), no retries (a retry is a new, recorded
  attempt), no proxy from the environment, one deadline for the whole exchange, a size cap on answers.
- `provider_request` adds the provider's key and makes every failure a ProviderError whose message never
  quotes the key; a body in which the provider echoed the key comes back with it redacted.

urllib3 directly, not requests: requests builds a PreparedRequest, merges session settings and cookies on
every call, which doubled the client's CPU per call (0.60 against 0.34 ms to the sandbox). Connections
stay open between calls (most of the cost of a short call) in one pool per checked address and host name.
Celery's prefork pool forks workers after import, and a pool must not be shared across a fork, so each
process builds its own on first use.
"""

from __future__ import annotations

import html
import json
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import certifi
import urllib3
from django.views.decorators.debug import sensitive_variables

from . import safety
from .errors import ErrorKind, ProviderError

USER_AGENT = "Switchboard/1.0 (+https://github.com/switchboard)"
# Answers past this size are refused rather than read into memory: no chat reply is this big.
MAX_RESPONSE_BYTES = 2 * 1024 * 1024

_lock = threading.Lock()
_pools: dict[str, urllib3.PoolManager] = {}
_pools_pid: int | None = None
PROVIDERS, RECEIVERS = "providers", "receivers"


def pool(kind: str = PROVIDERS) -> urllib3.PoolManager:
    """Connections to checked addresses: no retries (Switchboard retries as a new attempt), no proxy from the
    environment (urllib3 reads none), sized for a threaded worker keeping many calls in flight.

    Providers and receivers (callbacks, the Graph API) have pools of their own, so that many callback hosts
    never push a provider's open connections out.
    """
    global _pools_pid
    with _lock:
        if _pools_pid != os.getpid():
            _pools.clear()
            _pools_pid = os.getpid()
        if kind not in _pools:
            # certifi's CA bundle, as requests uses: the same hosts are trusted on every machine.
            _pools[kind] = urllib3.PoolManager(num_pools=32, maxsize=256, retries=False, ca_certs=certifi.where())
        return _pools[kind]


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]  # case-insensitive

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class OutboundError(Exception):
    """A request that got no answer: refused by the guard, unreachable, too slow, too large or broken off.

    `kind` is one of ProviderError's kinds; the message names the host, never a header.
    """

    def __init__(self, kind: ErrorKind, message: str, status: int | None = None):
        super().__init__(message)
        self.kind, self.message, self.status = kind, message, status


# Every frame below this one (urllib3, http.client) holds the request's headers, an Authorization among
# them: hide all their variables from Django's error reports.
@sensitive_variables()
def outbound_request(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    body: bytes | None = None,
    timeout: float,
    connect_timeout: float = 10.0,
    limit: int = MAX_RESPONSE_BYTES,
    kind: str = RECEIVERS,
) -> Answer:
    """One exchange with a checked destination, or OutboundError."""
    try:
        where = safety.destination(url)
    except ProviderError as error:
        raise OutboundError(error.kind, error.message) from None
    pool_kwargs = {"server_hostname": where.host, "assert_hostname": where.host} if where.scheme == "https" else {}
    deadline = time.monotonic() + timeout  # the whole exchange, not each read
    response = None
    try:
        response = _connected(where, method, body, headers, pool_kwargs, kind, deadline, connect_timeout, timeout)
        raw = read_capped(response, limit=limit, deadline=deadline)
    # NewConnectionError is a ConnectTimeoutError in urllib3's family tree: it must be caught first.
    except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.SSLError) as exc:
        raise OutboundError(ErrorKind.NETWORK, f"Could not reach {where.host}: {_reason(exc)}.") from None
    except (urllib3.exceptions.TimeoutError, ResponseTooSlow):
        raise OutboundError(ErrorKind.TIMEOUT, f"No answer from {where.host} within {timeout:g} s.") from None
    except urllib3.exceptions.HTTPError as exc:  # e.g. the connection broke off in the middle of the body
        message = f"The answer from {where.host} broke off ({type(exc).__name__})."
        raise OutboundError(ErrorKind.NETWORK, message) from None
    except OSError as exc:  # a socket error urllib3 did not wrap
        raise OutboundError(ErrorKind.NETWORK, f"Could not reach {where.host}: {_reason(exc)}.") from None
    except ValueError as exc:  # http.client refusing a header or URL: its message would quote the header
        raise OutboundError(ErrorKind.NETWORK, f"Could not send to {where.host} ({type(exc).__name__}).") from None
    except ResponseTooLarge as exc:
        raise OutboundError(ErrorKind.BAD_RESPONSE, str(exc), status=response.status) from None
    return Answer(response.status, raw, response.headers)


@sensitive_variables()
def _connected(where, method, body, headers, pool_kwargs, kind, deadline, connect_timeout, timeout):
    """The response from the first of the checked addresses that takes the connection, in the resolver's
    order: a name with an IPv6 and an IPv4 address still works on a machine without IPv6, and a dead
    address among several is skipped. Only a failure to connect moves on; nothing was sent by then."""
    for n, address in enumerate(where.addresses):
        left = deadline - time.monotonic()
        if left <= 0:
            raise urllib3.exceptions.ConnectTimeoutError(None, "the deadline passed")
        connections = pool(kind).connection_from_host(address, where.port, where.scheme, pool_kwargs=pool_kwargs)
        try:
            return connections.urlopen(
                method,
                where.target,
                body=body,
                headers={"Host": where.host_header, "User-Agent": USER_AGENT, **headers},
                timeout=urllib3.Timeout(connect=min(left, connect_timeout), read=min(left, timeout)),
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
        except urllib3.exceptions.ConnectTimeoutError:  # NewConnectionError included: refused, unreachable
            if n == len(where.addresses) - 1:
                raise
    raise AssertionError("a destination always has an address")  # pragma: no cover


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
API_KEY_MAX = 4096  # providers' keys are tens to a few hundred characters; a JWT-style one about a thousand


def api_key_problem(key: str) -> str | None:
    """Why a key could never be sent (refused when it is saved, not at every call), in words that never
    quote it; None for a key that can."""
    if len(key) > API_KEY_MAX:
        return f"The API key is {len(key):,} characters long; keys are at most {API_KEY_MAX:,}. Paste only the key."
    if not _HEADER_SAFE.fullmatch(key):
        return (
            "The API key has a line break, a space or a character HTTP headers cannot carry (keys are letters, "
            "digits and signs of plain ASCII). Paste the key again, from the provider's page."
        )
    return None


@sensitive_variables()
def provider_request(
    method: str,
    url: str,
    api_key: str,
    body: dict[str, Any] | None,
    timeout: float,
    *,
    auth: Mapping[str, str] | None = None,
) -> tuple[int, str, Mapping[str, str]]:
    """One JSON exchange with a provider: (status, body text, case-insensitive headers), or ProviderError.

    The key goes as `Authorization: Bearer KEY` unless `auth` gives the provider's own headers (Anthropic's
    `x-api-key` and `anthropic-version`). An error message that never quotes the key, and a body with the
    key redacted where the provider echoed it.
    """
    if not _HEADER_SAFE.fullmatch(api_key):
        # http.client would refuse it with the whole header, key included, in its error message.
        raise ProviderError(
            ErrorKind.CONFIG,
            "The API key has a line break, a space or a character HTTP headers cannot carry: nothing was sent. "
            "Paste the key again.",
        )
    headers = {
        **(auth if auth is not None else {"Authorization": f"Bearer {api_key}"}),
        "Accept": "application/json",
        "Accept-Encoding": "gzip, deflate",
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
    try:
        answer = outbound_request(method, url, headers=headers, body=payload, timeout=timeout, kind=PROVIDERS)
    except OutboundError as error:
        raise ProviderError(error.kind, error.message, status=error.status) from None
    try:
        text = answer.body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProviderError(
            ErrorKind.BAD_RESPONSE,
            "The answer is not UTF-8 text, so it cannot be JSON. Check that the base URL points at the API.",
            status=answer.status,
            body=_scrub(answer.body.decode("utf-8", errors="replace"), api_key)[:2000],  # cut after scrubbing
        ) from None
    return answer.status, _scrub(text, api_key), answer.headers


def _reason(exc: Exception) -> str:
    text = str(exc)
    for known in ("Connection refused", "Name or service not known", "No route to host", "Connection reset"):
        if known in text:
            return known.lower()
    if "Temporary failure in name resolution" in text or "nodename nor servname" in text:
        return "the host name does not resolve"
    return "the connection failed"


def _scrub(text: str, api_key: str) -> str:
    """The text with the key taken out wherever a provider echoed it: as typed, and as JSON, a URL or HTML
    would write it (a key with a quote or a backslash comes back escaped, \" or \\, and would slip past a
    plain replace)."""
    if not api_key or len(api_key) < 4:
        return text
    for form in sorted(key_spellings(api_key), key=len, reverse=True):
        text = text.replace(form, "[redacted]")
    return text


def key_spellings(api_key: str) -> set[str]:
    """Every way a response body may spell the key."""
    json_forms = {json.dumps(api_key)[1:-1], json.dumps(api_key, ensure_ascii=False)[1:-1]}
    json_forms |= {form.replace("/", "\\/") for form in json_forms}  # JSON may escape / as \/
    url_forms = {urllib.parse.quote(api_key, safe=""), urllib.parse.quote_plus(api_key)}
    return {api_key, html.escape(api_key), *json_forms, *url_forms} - {""}
