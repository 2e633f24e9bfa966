"""Logging in: the login form (the dashboard's and the admin's) and how django-axes names who tried.

A username longer than any account's is refused by the form before anyone is authenticated: django-axes
records each failed login with the username in a 255-character column, and a longer one made PostgreSQL
refuse the row (a 500 for anyone, logged in or not).
"""

from __future__ import annotations

from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MaxLengthValidator

USERNAME_MAX = 150  # Django's own usernames are at most this long


class LoginForm(AuthenticationForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].validators.append(MaxLengthValidator(USERNAME_MAX))
        self.fields["password"].validators.append(MaxLengthValidator(4096))


def axes_username(request, credentials: dict | None = None) -> str:
    """The username django-axes records, cut to its column (a second guard behind the form)."""
    username = (credentials or {}).get("username") or request.POST.get("username") or ""
    return str(username)[:USERNAME_MAX]
