"""How every request fails: with a 4xx that names the problem, or a 503 when a backing service is away.

Guarantees, and how they are kept:
- Under `/api/` every answer is JSON, `{"error": {"field", "message"}}`, whatever produced it: Django's own
  400/404/405/413 and a 500 alike (`ApiErrorsMiddleware` rewrites any other error body, the handlers
  below build the rest).
- Text the database cannot store (a NUL in the path or the query string) is refused with a 400 before a
  view runs (`RefuseUnstorableInputMiddleware`); forms refuse it field by field (Django's form fields
  do), and JSON bodies are checked where they are decoded (conversations/payloads.py).
- The database or the broker being unreachable is a 503 with `Retry-After`, never a 500: `server_error`
  is Django's handler500, called while the exception is still being handled, so it can tell an outage
  from a bug. Its pages use no database (no user, no session): they must render during the outage.
"""

from __future__ import annotations

import logging
import sys

from django.core.exceptions import DisallowedHost, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader

from conversations.payloads import printable, unstorable

logger = logging.getLogger(__name__)
RETRY_AFTER_SECONDS = 5


def is_api(request: HttpRequest) -> bool:
    """Under /api/ (in any case, /API/v1 included): every answer there is JSON."""
    path = request.path_info[:5].lower()
    return path == "/api/" or path == "/api"


# OpenAI's error types by status: its SDKs read `type`, `param` and `code` (conversations/api is a drop-in).
ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def json_error(
    status: int, field: str, message: str, *, kind: str = "", param: str | None = None, **headers: str
) -> JsonResponse:
    """Every error under /api/, from a view or from the middleware (a 405, a 413, a database away): our
    `field` and `message`, and OpenAI's `type`, `param` and `code` beside them, so the drop-in endpoint's SDKs
    read any of our answers."""
    error_type = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    error = {
        "field": field,
        "message": message,
        "type": error_type,
        "param": param if param is not None else (field if status < 500 else None),
        "code": kind or error_type,
    }
    response = JsonResponse({"error": error}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def error_page(status: int, title: str, message: str, **headers: str) -> HttpResponse:
    html = loader.get_template("error.html").render({"title": title, "message": message})
    response = HttpResponse(html, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def service_unavailable(exc: BaseException | None) -> str | None:
    """Which backing service an exception says is away ("database", "message broker"), or None for a bug."""
    from django.db import InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError):
        return "database"
    try:
        import psycopg
        import psycopg_pool
    except ImportError:  # pragma: no cover - SQLite-only installs
        pass
    else:
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | psycopg_pool.PoolTimeout):
            return "database"
    from kombu.exceptions import OperationalError as BrokerError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeout

    if isinstance(exc, BrokerError | RedisConnectionError | RedisTimeout):
        return "message broker"
    return None


def unavailable_response(request: HttpRequest, service: str) -> HttpResponse:
    message = f"Switchboard is briefly unavailable: the {service} did not answer. Try again in a few seconds."
    if is_api(request):
        return json_error(503, "service", message, kind="service_unavailable", Retry_After=str(RETRY_AFTER_SECONDS))
    return error_page(503, "Briefly unavailable", message, Retry_After=str(RETRY_AFTER_SECONDS))


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: a 503 for an outage, else a 500 that says it is ours (JSON under /api/)."""
    service = service_unavailable(sys.exc_info()[1])
    if service:
        return unavailable_response(request, service)
    message = "Switchboard failed on its side; the error is logged. Try again, and report it if it persists."
    if is_api(request):
        return json_error(500, "server", message)
    return error_page(500, "Something went wrong", message)


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: Django's refusals (a body over the upload limit, too many fields, an unknown host)."""
    if isinstance(exception, RequestDataTooBig):
        from django.conf import settings

        message = (
            f"The body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} bytes, more than any request here needs. "
            "Send less."
        )
        return json_error(413, "body", message) if is_api(request) else error_page(413, "Too large", message)
    if isinstance(exception, DisallowedHost):
        message = (
            "The Host header names an address this Switchboard does not answer to. Call it by the address it is "
            "served at; its operator can add another address to ALLOWED_HOSTS."
        )
        return json_error(400, "Host", message) if is_api(request) else error_page(400, "Unknown address", message)
    message = f"The request was refused: {exception.__class__.__name__}. Check the address and what was sent."
    return json_error(400, "request", message) if is_api(request) else error_page(400, "Bad request", message)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if is_api(request):
        return json_error(404, "path", f"Nothing at {request.path}. The endpoints are listed at /api/docs/.")
    return error_page(404, "Not found", f"There is no page at {request.path}; it may have been deleted.")


class RefuseUnstorableInputMiddleware:
    """A 400 for a NUL in the path or the query string: no page can store or search for it.

    Query strings are decoded with replacement characters, so a NUL is the one thing in them that the
    database refuses. Posted forms are left to their form fields, which name the field in the form.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        found = _unstorable_input(request)
        if found:
            field, label, problem = found
            message = f"{label} {problem}, and nothing here can hold it."
            return json_error(400, field, message) if is_api(request) else error_page(400, "Bad request", message)
        return self.get_response(request)


def _unstorable_input(request: HttpRequest) -> tuple[str, str, str] | None:
    """(field as an API error names it, the same for a person, problem) or None."""
    problem = unstorable(request.path)
    if problem:
        return "path", "The address", problem
    for key, values in request.GET.lists():
        for text in [key, *values]:
            problem = unstorable(text)
            if problem:
                return f"query.{printable(key)}", f"The query parameter {printable(key)!r}", problem
    return None


class ApiErrorsMiddleware:
    """Under /api/, an error answer that is not JSON (a 405 from require_POST, a CSRF 403) is made JSON."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and is_api(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return _as_json(request, response)
        return response


def _as_json(request: HttpRequest, response: HttpResponse) -> JsonResponse:
    status = response.status_code
    if status == 405:
        allowed = response.get("Allow", "")
        converted = json_error(
            405, "method", f"{request.method} is not allowed at {request.path}; use {allowed or 'another method'}."
        )
        converted["Allow"] = allowed
        return converted
    if status == 404:
        return json_error(404, "path", f"Nothing at {request.path}. The endpoints are listed at /api/docs/.")
    if status == 403:
        return json_error(403, "request", "Refused. Send the integration's token as 'Authorization: Bearer sb_…'.")
    if status == 400:
        # Under DEBUG (make run) Django answers its refusals with the debug page, not handler400: an unknown
        # Host is named here as handler400 names it with DEBUG off (Django has logged it already).
        try:
            request.get_host()
        except DisallowedHost as refused:
            return bad_request(request, refused)
    converted = json_error(status, "request", f"The request was refused (HTTP {status}).")
    if "Retry-After" in response:
        converted["Retry-After"] = response["Retry-After"]
    return converted
