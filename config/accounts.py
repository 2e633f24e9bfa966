"""Logging in: the login form (the dashboard's and the admin's) and how django-axes names who tried.

A username longer than any account's is refused by the form before anyone is authenticated: django-axes
records each failed login with the username in a 255-character column, and a longer one made PostgreSQL
refuse the row (a 500 for anyone, logged in or not).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.validators import MaxLengthValidator
from django.utils.translation import ngettext

USERNAME_MAX = 150  # Django's own usernames are at most this long


class LoginForm(AuthenticationForm):
    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That username and password do not match an account. Both are case-sensitive.",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].validators.append(MaxLengthValidator(USERNAME_MAX))
        self.fields["password"].validators.append(MaxLengthValidator(4096))


class SwitchboardLoginView(LoginView):
    """The login page; `?username=` fills the username in (the lockout page's link back uses it)."""

    authentication_form = LoginForm

    def get_initial(self):
        return {**super().get_initial(), "username": self.request.GET.get("username", "")[:USERNAME_MAX]}


def readable_duration(value: timedelta | None) -> str:
    """15 minutes, 1 hour, 1 hour 30 minutes: how long a lockout lasts, as people say it."""
    if not isinstance(value, timedelta):
        return "a while"
    minutes = max(1, round(value.total_seconds() / 60))
    hours, minutes = divmod(minutes, 60)
    parts = [ngettext("%d hour", "%d hours", hours) % hours] if hours else []
    if minutes:
        parts.append(ngettext("%d minute", "%d minutes", minutes) % minutes)
    return " ".join(parts)


def axes_username(request, credentials: dict | None = None) -> str:
    """The username django-axes records, cut to its column (a second guard behind the form)."""
    username = (credentials or {}).get("username") or request.POST.get("username") or ""
    return str(username)[:USERNAME_MAX]
