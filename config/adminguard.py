"""The admin's own query language, refused politely.

The admin's list pages take field lookups straight from the address (`?contact__regex=(`,
`?model__range=a`, `?ip_address__exact=1`, a date hierarchy's `?created_at__year=99999999999999999999`)
and its actions take row ids from the form (`_selected_action=abc`). Django passes them to the database or
to a field's parser as they are, and a malformed one fails there (DataError, ValueError, OverflowError…):
a 500 for what is bad input. Any model's admin, ours or a library's (django-axes), is covered here, at the
one place every admin request passes: such a failure on an admin page that has a query string or posted
row ids is a 400 that says which part to remove.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import DataError, OperationalError, ProgrammingError
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from .errors import error_page

BAD_INPUT = (DataError, ProgrammingError, ValueError, IndexError, OverflowError, ValidationError, TypeError)


def _bad_input(exception: Exception) -> bool:
    # SQLite runs REGEXP as a Python function: a malformed pattern comes back as this OperationalError, which
    # elsewhere would mean the database is away.
    sqlite_regexp = isinstance(exception, OperationalError) and "user-defined function raised" in str(exception)
    return isinstance(exception, BAD_INPUT) or sqlite_regexp


class AdminBadInputMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _bad_input(exception) or not request.path.startswith(reverse("admin:index")):
            return None
        if request.GET:
            return error_page(
                400,
                "This filter cannot be applied",
                f"The address asks the list to filter by {', '.join(sorted(request.GET))[:300]}, and the "
                f"database refused it ({type(exception).__name__}). Remove that part of the address, or use the "
                "filters on the page.",
            )
        if request.method == "POST" and "_selected_action" in request.POST:
            return error_page(
                400,
                "These rows cannot be selected",
                "The action was sent with row ids that are not this list's. Go back to the list and tick the rows.",
            )
        return None
