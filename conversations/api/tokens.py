"""Integrations and their secrets: tokens random, shown once, stored as a SHA-256 hash; callback signing
secrets encrypted at rest, shown once when made. Every change is a save, so the history records who made it."""

from __future__ import annotations

import hashlib
import secrets

from django.db import transaction
from django.utils import timezone

from connectors import crypto

from .. import store
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
    with transaction.atomic():
        integration = Integration.objects.create(
            name=name,
            token_hash=token_hash,
            token_hint=hint,
            token_changed_at=timezone.now(),
            default_connection=default_connection or (connections[0] if connections else None),
            callback_url=callback_url,
            callback_secret_encrypted=new_callback_secret() if callback_url else "",
            callback_secret_changed_at=timezone.now() if callback_url else None,
        )
        integration.templates.set(templates)
        integration.connections.set(connections)
    return integration, token


def integration_rotate_token(*, integration: Integration) -> str:
    """Replace the token: the old one is refused from the next request on. Returns the new one, once."""
    token, integration.token_hash, integration.token_hint = new_token()
    integration.token_changed_at = timezone.now()
    integration.save(update_fields=["token_hash", "token_hint", "token_changed_at"])
    return token


def integration_new_signing_secret(*, integration: Integration) -> str:
    """Replace the secret that signs callbacks; returns it in the clear, once."""
    integration.callback_secret_encrypted = new_callback_secret()
    integration.callback_secret_changed_at = timezone.now()
    integration.save(update_fields=["callback_secret_encrypted", "callback_secret_changed_at"])
    return crypto.decrypt(integration.callback_secret_encrypted)


def integration_set_enabled(*, integration: Integration, enabled: bool) -> None:
    integration.is_active = enabled
    integration.save(update_fields=["is_active"])


def integration_for(token: str) -> Integration | None:
    """The integration a token belongs to, enabled or not (the caller says which is refused how), with its
    default connection: most requests use it, and it comes in the same query."""
    if not token.startswith(PREFIX):
        return None
    return store.integration_by_token(digest(token))
