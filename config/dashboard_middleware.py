"""Middleware only the dashboard's pages need, passed by for the token-authenticated JSON API (/api/v1/).

An API request carries a Bearer token and is answered with JSON: it has no flash messages to show, no page a
Content-Security-Policy header would protect, and no logged-in user whose edits a history row would name.
Those three cost 7% of the web process's CPU on every relayed request (py-spy over bench/relay.py at eight
clients: the CSP header built for each response 3.9%, the messages storage 2.3%, the history's request 1%).
Each class here is the original (checks looking for a subclass of it still find it) that hands an /api/v1/
request straight to the next middleware; the history's is a function, wrapped the same way. The rest of the
chain (sessions, CSRF, authentication, django-axes) stays as it is: their system checks look for their exact
names, and they cost little here.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware as _CSP
from django.contrib.messages.middleware import MessageMiddleware as _Messages
from django.utils.cache import add_never_cache_headers
from simple_history.middleware import HistoryRequestMiddleware as _History

API = "/api/v1/"


class _PagesOnly:
    def __call__(self, request):
        if request.path_info.startswith(API):
            return self.get_response(request)
        return super().__call__(request)


class CSPMiddleware(_PagesOnly, _CSP):
    pass


class MessageMiddleware(_PagesOnly, _Messages):
    pass


def HistoryRequestMiddleware(get_response):  # noqa: N802 - a middleware factory, named as django-simple-history's
    pages = _History(get_response)

    def middleware(request):
        if request.path_info.startswith(API):
            return get_response(request)
        return pages(request)

    return middleware


class PrivatePagesMiddleware:
    """A page shown to someone logged in is theirs: no browser or proxy cache may keep it (transcripts, phone
    numbers, exports). Pages that set their own Cache-Control keep theirs; the JSON API is answered to a Bearer
    token, which shared caches never store answers for."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.path_info.startswith(API) or response.has_header("Cache-Control"):
            return response
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            add_never_cache_headers(response)
        return response
