"""Integration tokens: random, shown once, stored as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets

from connectors import crypto

from ..models import Integration

PREFIX = "sb_"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str, str]:
    """A fresh token, its hash (what is stored) and its hint (its first characters, to recognise it)."""
    token = PREFIX + secrets.token_urlsafe(32)
    return token, digest(token), token[:8]


def new_callback_secret() -> str:
    """The encrypted secret that signs callbacks."""
    return crypto.encrypt(secrets.token_urlsafe(32))


def integration_create(
    *, name: str, templates=(), connections=(), default_connection=None, callback_url: str = ""
) -> tuple[Integration, str]:
    """A new integration and its token. The token is returned once and never stored in the clear."""
    token, token_hash, hint = new_token()
    integration = Integration.objects.create(
        name=name,
        token_hash=token_hash,
        token_hint=hint,
        default_connection=default_connection or (connections[0] if connections else None),
        callback_url=callback_url,
        callback_secret_encrypted=new_callback_secret() if callback_url else "",
    )
    integration.templates.set(templates)
    integration.connections.set(connections)
    return integration, token


def integration_for(token: str) -> Integration | None:
    if not token.startswith(PREFIX):
        return None
    return Integration.objects.filter(token_hash=digest(token)).first()
