"""Which provider URLs Switchboard may call: no plain http, no internal addresses, unless an operator says so.

A connection's base URL is typed by staff, and the worker sends an API key to it, so it must not become a
way to reach the metadata service (169.254.169.254), the database or anything else inside our network
(server-side request forgery), nor to send a key unencrypted. Hosts in ALLOWED_PROVIDER_HOSTS (the
sandbox, a local Ollama or vLLM) are exempt from both rules.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from urllib.parse import urlsplit

from django.conf import settings

from .errors import ErrorKind, ProviderError


def url_problem(url: str) -> str | None:
    """What is wrong with a base URL on its face (no DNS lookup), or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return f"{url} is not a valid URL. Use the provider's API root, for example https://api.mistral.ai/v1."
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url} is not a base URL. Use the provider's API root, for example https://api.mistral.ai/v1."
    if parts.username or parts.password:
        return "Put the API key in the API key field, not in the base URL."
    if _allowed(parts.hostname):
        return None
    if parts.scheme == "http":
        return (
            f"{parts.hostname} is reached over plain http, which would send the API key unencrypted. Use https, "
            "or add the host to ALLOWED_PROVIDER_HOSTS if it is a local server such as the sandbox."
        )
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return None
    return None if literal.is_global else _internal(parts.hostname, str(literal))


def check_reachable(url: str) -> None:
    """Raise ProviderError(CONFIG) unless the URL is well-formed and every address of its host is public."""
    problem = url_problem(url)
    if problem:
        raise ProviderError(ErrorKind.CONFIG, problem)
    host = urlsplit(url).hostname or ""
    if _allowed(host):
        return
    verdict = _resolved_verdict(host)
    if verdict:
        raise verdict


def _resolved_verdict(host: str) -> ProviderError | None:
    """Whether every address of `host` is public, remembered for a minute: a lookup per call would add its
    latency to every call. (The HTTP client resolves again; pinning the checked address is not done.)"""
    now = time.monotonic()
    cached = _verdicts.get(host)
    if cached and cached[0] > now:
        return cached[1]
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return ProviderError(ErrorKind.NETWORK, f"Could not reach {host}: the host name does not resolve.")
    verdict = next(
        (
            ProviderError(ErrorKind.CONFIG, _internal(host, a))
            for a in sorted(addresses)
            if not ipaddress.ip_address(a.split("%")[0]).is_global
        ),
        None,
    )
    _verdicts[host] = (now + VERDICT_SECONDS, verdict)
    return verdict


VERDICT_SECONDS = 60.0
_verdicts: dict[str, tuple[float, ProviderError | None]] = {}


def _allowed(host: str) -> bool:
    return host.lower() in {h.lower() for h in settings.ALLOWED_PROVIDER_HOSTS}


def _internal(host: str, address: str) -> str:
    return (
        f"{host} points to {address}, an internal address (private, loopback, link-local or metadata), so "
        "nothing was sent. Use the provider's public URL, or add the host to ALLOWED_PROVIDER_HOSTS if it "
        "really is a provider inside your network."
    )
