"""Encryption at rest for provider secrets (Fernet, from the `cryptography` package).

FIELD_ENCRYPTION_KEY holds one or more keys: the first encrypts, every one of them decrypts. To rotate,
put a new key first, keep the old one after it, and re-encrypt the stored secrets.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with any configured key."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEY))


def encrypt(plaintext: str) -> str:
    return _current().encrypt(plaintext.encode()).decode()


def rotate(token: str) -> str:
    """The same secret encrypted again with the first (newest) key."""
    try:
        return _current().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEY; keep the old key in the "
            "list until rotation has run."
        ) from None


def decrypt(token: str) -> str:
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable(
            "The stored API key cannot be decrypted with FIELD_ENCRYPTION_KEY. Restore the key it was "
            "saved with (keep it in the list after the new one), or enter the API key again."
        ) from None


def body_signature(secret: str, body: bytes) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of a raw body, the form both Meta's webhooks and our callbacks use."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
