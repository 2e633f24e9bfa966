"""Reading a request body that came without Content-Length.

Django reads `request.body` up to Content-Length, so a body sent with `Transfer-Encoding: chunked` (curl -T -,
some HTTP clients and proxies) reads as empty: the API answered "the body must be a JSON object" and a
correctly signed webhook "signature does not match". The web server (gunicorn) decodes the chunks: read its
stream up to the limit instead.
"""

from __future__ import annotations

from django.http import HttpRequest


class TooLarge(ValueError):
    pass


def chunked(request: HttpRequest) -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower() and not request.headers.get(
        "Content-Length"
    )


def read_chunked(request: HttpRequest, limit: int) -> bytes:
    """The decoded body, or TooLarge past `limit` bytes."""
    stream = request.META.get("wsgi.input")
    body = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise TooLarge(f"The body is over {limit:,} bytes.")
    return body
