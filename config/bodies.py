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


class Unreadable(ValueError):
    """The chunks could not be decoded: a size that is not hexadecimal, data not followed by CRLF, or a client
    that stopped sending. The message names what the server found and how a body is framed."""


def chunked(request: HttpRequest) -> bool:
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower() and not request.headers.get(
        "Content-Length"
    )


def read_chunked(request: HttpRequest, limit: int) -> bytes:
    """The decoded body; TooLarge past `limit` bytes, Unreadable when the chunks are malformed."""
    stream = request.META.get("wsgi.input")
    try:
        body = stream.read(limit + 1) if stream is not None else b""
    except Exception as error:  # noqa: BLE001 - the server's own decoder: gunicorn raises its parse errors (and
        # an OSError for a client gone mid-body), which were a 500; whatever it raises, the body is unreadable.
        if isinstance(error, OSError):  # gunicorn's NoMoreData ("No more data after: None") is one
            found = "it ended before its last chunk, 0 CRLF CRLF"
        else:  # unprintable characters escaped: the text can quote the client's bytes
            found = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in str(error)[:120])
        raise Unreadable(
            f"The chunked body could not be read ({found}). Each chunk is its size in hexadecimal, CRLF, that many "
            "bytes, CRLF, and the last is 0 CRLF CRLF; or send the body with Content-Length instead."
        ) from error
    if len(body) > limit:
        raise TooLarge(f"The body is over {limit:,} bytes.")
    return body
