"""Which URLs Switchboard may call: one decision for every outbound request and every URL field.

Staff type URLs that the workers then call with secrets attached: a connection's base URL (with its API
key), an integration's callback URL (with signed customer messages), a WhatsApp channel's Graph API base
URL (with Meta's access token). None of them may become a way into our own network (server-side request
forgery: the metadata service at 169.254.169.254, the database, anything on loopback), nor carry a secret
over plain http.

Guarantees, and how they are kept:
- A host is judged by the addresses it reaches, not by how it is spelled. Every IPv4 spelling the C
  resolver accepts (`2852039166`, `0x7f000001`, `0177.0.0.1`, `127.1`, `0`) is read as that resolver
  reads it; IPv6 literals, IPv4-mapped, IPv4-translated, 6to4, Teredo and NAT64 addresses are judged by
  the IPv4 address inside them; other IPv6 is public only inside global unicast (2000::/3); a trailing
  dot and letter case change nothing; userinfo is refused.
- A name is resolved, and every address it resolves to must be public. `destination` returns those
  checked addresses, and connectors/http.py connects to one of them (TLS still verified against the
  name), so a second lookup that answers differently (DNS rebinding) is never made.
- ALLOWED_PROVIDER_HOSTS is the one exception, for every outbound kind: a host listed there, written
  exactly as listed (the sandbox, a local model server, a test receiver), may be plain http and internal;
  an entry `host:port` lists that port only. Another spelling of the same host (`127.1`, `localhost.`) is
  not listed.
- On save, `url_save_check` refuses what is wrong on its face or resolves inside the network; a name that
  does not resolve yet is saved with a warning, and judged again before each request.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from django.conf import settings

from .errors import ErrorKind, ProviderError

# Cloud metadata services by name; most resolve to 169.254.169.254 only inside their cloud.
METADATA_HOSTS = {
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
    "metadata.packet.net",
    "metadata.platformequinix.com",
}
# Characters a URL of ours never needs and that parsers disagree about (a backslash, whitespace, controls).
_AMBIGUOUS = re.compile(r"[\\\s\x00-\x1f\x7f]")
_NOT_ASCII = re.compile(r"[^\x00-\x7f]+")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
# Only global unicast (2000::/3) is public IPv6; everything else (site-local fec0::/10, local-use NAT64
# 64:ff9b:1::/48, unique-local, reserved ranges) stays inside some network.
_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
VERDICT_SECONDS = 60.0
FAILED_LOOKUP_SECONDS = 2.0


@dataclass(frozen=True)
class Destination:
    """Where a request goes: the host as written (for the Host header, SNI and the certificate), the
    checked addresses to connect to, and the rest of the URL."""

    scheme: str
    host: str
    port: int
    target: str  # path and query, as sent in the request line
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def url_problem(url: str, example: str = "https://api.mistral.ai/v1") -> str | None:
    """What is wrong with a URL on its face, before any lookup, or None."""
    parsed = _parse(url, example)
    return parsed if isinstance(parsed, str) else None


def root_url_problem(url: str, example: str) -> str | None:
    """What is wrong with a URL that request paths are added to (a provider's base URL, the Graph API's), on
    top of `url_problem`: a query would end up before the path (`/v1?x=1/chat/completions`)."""
    if "?" in url:  # quoted up to the query: what follows may be a key someone pasted
        return (
            f"{url.split('?', 1)[0]} has a query (?…) after it. A base URL is the root each request's path is "
            f"added to (such as /chat/completions), so it cannot carry one: use the root alone, for example {example}."
        )
    return None


def url_save_check(url: str, example: str = "https://api.mistral.ai/v1") -> tuple[str | None, str | None]:
    """(problem, warning) for a URL about to be saved: a problem refuses it; a warning (the name does not
    resolve yet) lets it be saved, and the name is judged again before each request."""
    problem = url_problem(url, example)
    if problem:
        return problem, None
    try:
        destination(url)
    except ProviderError as error:
        if error.kind == ErrorKind.NETWORK:
            return None, f"{error.message} It is saved, and will be checked again before each request."
        return error.message, None
    return None, None


def destination(url: str) -> Destination:
    """The checked destination of a URL, or ProviderError: CONFIG for a URL that may not be called,
    NETWORK for a name that does not resolve."""
    parsed = _parse(url)
    if isinstance(parsed, str):
        raise ProviderError(ErrorKind.CONFIG, parsed)
    scheme, host, port, target, listed = parsed
    addresses = _resolve(host, port, check=not listed)
    return Destination(scheme, host, port, target, addresses)


def check_reachable(url: str) -> None:
    destination(url)


def is_public(address: str) -> bool:
    """Whether an address is on the public internet, judging embedded IPv4 addresses by themselves."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_public(str(embedded))
        if ip not in _GLOBAL_UNICAST:
            return False
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64 or ip in _IPV4_TRANSLATED or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _parse(url: str, example: str = "https://api.mistral.ai/v1") -> tuple[str, str, int, str, bool] | str:
    """(scheme, host, port, target, listed) or a problem. `host` is lower case, without brackets or a
    trailing dot; `listed` says it is in ALLOWED_PROVIDER_HOSTS."""
    if not isinstance(url, str) or _AMBIGUOUS.search(url):
        return f"{url!r} is not a usable URL: it holds a space, a backslash or a control character."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"{url} is not a valid URL. Use the full address, for example {example}."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url} is not a web address. Use the full address with https://, for example {example}."
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return "A URL here may not carry a user name or password (user@host); put the key in its own field."
    if "#" in url:
        return f"{url} has a fragment (#{parts.fragment}), which is never sent to the server: remove it."
    if port == 0:
        return f"{url} names port 0, which no server listens on. Leave the port out, or give the server's own."
    host = parts.hostname[:-1] if parts.hostname.endswith(".") else parts.hostname  # the root's dot
    if not host:
        return f"{url} has no host name."
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return f"{parts.hostname} is not a valid host name."
    port = port or (443 if parts.scheme == "https" else 80)
    listed = _listed(parts.hostname, port)  # exactly as written: `localhost.` is not the listed `localhost`
    if parts.scheme == "http" and not listed:
        return (
            f"{host} is reached over plain http, which would send secrets unencrypted. Use https, or add the "
            "host to ALLOWED_PROVIDER_HOSTS if it is a local server such as the sandbox."
        )
    if not listed:
        literal = _literal_address(host)
        if literal is not None and not is_public(literal):
            return _internal(host, literal)
        if literal is None and (host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost")):
            return (
                f"{host} is an internal address (a name for this machine, or for a cloud's metadata service), so "
                "nothing was sent. Use the public URL, or add the host to ALLOWED_PROVIDER_HOSTS if it really is "
                "a server inside your network."
            )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    # A path of non-ASCII text (a Unicode file name) goes out percent-encoded: http.client sends ASCII only.
    target = _NOT_ASCII.sub(lambda m: quote(m.group(), safe=""), target)
    return parts.scheme, host, port, target, listed


def _literal_address(host: str) -> str | None:
    """The address a host written as an IP literal means, in any spelling the C resolver accepts."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fx.]+", host) and re.search(r"\d", host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host))  # 2852039166, 0x7f000001, 0177.0.0.1, 127.1, 0
        except OSError:
            return None
    return None


_verdicts: dict[tuple[str, int, bool], tuple[float, tuple[str, ...] | ProviderError]] = {}
_verdicts_lock = threading.Lock()


def _resolve(host: str, port: int, *, check: bool) -> tuple[str, ...]:
    """Every address of `host` (all public when `check`), remembered for a minute: a lookup per call would
    add its latency to every provider call. What is remembered is what is connected to."""
    key = (host, port, check)
    now = time.monotonic()
    cached = _verdicts.get(key)
    if cached is None or cached[0] <= now:
        verdict = _lookup(host, port, check)
        # A failed lookup is remembered a moment only: a resolver's blip must not fail a minute of calls.
        keep = (
            FAILED_LOOKUP_SECONDS if isinstance(verdict, ProviderError) and verdict.kind == ErrorKind.NETWORK else None
        )
        cached = (now + (keep or VERDICT_SECONDS), verdict)
        with _verdicts_lock:
            if len(_verdicts) > 10_000:
                _verdicts.clear()
            _verdicts[key] = cached
    if isinstance(cached[1], ProviderError):
        raise cached[1]
    return cached[1]


def _lookup(host: str, port: int, check: bool) -> tuple[str, ...] | ProviderError:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return ProviderError(ErrorKind.NETWORK, f"Could not reach {host}: the host name does not resolve.")
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        return ProviderError(ErrorKind.NETWORK, f"Could not reach {host}: the host name does not resolve.")
    if check:
        for address in addresses:
            if not is_public(address):
                return ProviderError(ErrorKind.CONFIG, _internal(host, address))
    return addresses


def forget_verdicts() -> None:
    """Drop every remembered lookup (tests, and after ALLOWED_PROVIDER_HOSTS changes)."""
    with _verdicts_lock:
        _verdicts.clear()


def _listed(host: str, port: int) -> bool:
    """Whether ALLOWED_PROVIDER_HOSTS names this host (any port), or this host and port (`host:port`)."""
    names, pairs = _listed_hosts(tuple(settings.ALLOWED_PROVIDER_HOSTS))
    return host in names or (host, port) in pairs


@functools.cache
def _listed_hosts(listed: tuple[str, ...]) -> tuple[frozenset[str], frozenset[tuple[str, int]]]:
    names, pairs = set(), set()
    for entry in (e.strip().lower() for e in listed if e.strip()):
        bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", entry)
        host, _, port = (bracketed.group(1), None, bracketed.group(2)) if bracketed else entry.rpartition(":")
        if bracketed is None and (not host or ":" in host or not port.isdigit()):  # a name, or a bare IPv6
            host, port = entry, None
        if port:
            pairs.add((host, int(port)))
        else:
            names.add(host)
    return frozenset(names), frozenset(pairs)


def _internal(host: str, address: str) -> str:
    return (
        f"{host} points to {address}, an internal address (private, loopback, link-local or metadata), so "
        "nothing was sent. Use the public URL, or add the host to ALLOWED_PROVIDER_HOSTS if it really is a "
        "server inside your network."
    )
