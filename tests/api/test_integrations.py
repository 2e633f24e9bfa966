"""Scope and revocation: an integration reaches only its own connections; Admins disable it and rotate its
secrets from the dashboard, effective at the next request, each change in the history without the secret."""

from __future__ import annotations

import html
import json
import re

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from conversations.models import Call, Integration
from tests.factories import ConnectionFactory

from .conftest import auth

pytestmark = pytest.mark.django_db
MESSAGE = {"template": "Support", "contact": "+16505551234", "message": "Hi", "variables": {"business_name": "Acme"}}


def send(client, token):
    return client.post("/api/v1/messages", data=json.dumps(MESSAGE), content_type="application/json", **auth(token))


def test_a_connection_outside_the_scope_is_refused_by_name_with_no_provider_request(client, integration_token):
    ConnectionFactory(name="Finance bot")  # exists, but not this integration's
    response = client.post(
        "/api/v1/chat/completions",
        data=json.dumps({"model": "Finance bot", "messages": [{"role": "user", "content": "Hi"}]}),
        content_type="application/json",
        **auth(integration_token[1]),
    )

    assert response.status_code == 404  # as OpenAI answers a model the key may not use; never retried
    assert response.json()["error"] == {
        "field": "model",
        "message": "'Finance bot' is a connection this integration may not use. Allowed: Sandbox. "
        "An Admin can allow it on the integration's page.",
        "type": "not_found_error",
        "param": "model",
        "code": "model_not_found",  # as the README's table of errors says, and as OpenAI's SDKs read it
    }
    assert not Call.objects.exists()


def test_a_default_connection_taken_off_the_integration_is_no_longer_used(client, integration_token):
    """The attack run took the default connection off an integration's list (the admin allowed it): requests
    naming no connection still went through it."""
    integration, token = integration_token
    other = ConnectionFactory(name="Other", base_url=integration.default_connection.base_url)
    integration.connections.set([other])  # the default, Sandbox, is no longer allowed

    chat = client.post(
        "/api/v1/chat/completions",
        data=json.dumps({"messages": [{"role": "user", "content": "Hi"}]}),
        content_type="application/json",
        **auth(token),
    )
    message = send(client, token)
    models = client.get("/api/v1/models", **auth(token)).json()["data"]

    for response in (chat, message):
        assert response.status_code == 422
        assert response.json()["error"]["message"].startswith(
            "This integration's default connection, 'Sandbox', is no longer one it may use: name one in \"connection\"."
        )
    assert not Call.objects.exists()
    assert [m["id"] for m in models] == ["Other"]  # not the default's models


def test_the_admin_refuses_a_default_connection_the_integration_may_not_use(admin_client, integration_token):
    integration, _ = integration_token
    other = ConnectionFactory(name="Other")
    response = admin_client.post(
        reverse("admin:conversations_integration_change", args=[integration.pk]),
        {
            "name": integration.name,
            "templates": [t.pk for t in integration.templates.all()],
            "connections": [other.pk],
            "default_connection": integration.default_connection_id,
            "is_active": "on",
        },
    )

    assert response.status_code == 200  # the form again, with the error
    assert "The default connection must be one of the connections it may use." in response.content.decode()
    assert list(integration.connections.all()) == [integration.default_connection]


def test_a_disabled_integration_is_refused_at_once_and_enabled_again(client, lead_client, integration_token):
    integration, token = integration_token
    assert send(client, token).status_code == 202

    lead_client.post(reverse("conversations:integration_enabled", args=[integration.pk]), {"enabled": "no"})
    refused = send(client, token)
    lead_client.post(reverse("conversations:integration_enabled", args=[integration.pk]), {"enabled": "yes"})

    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "This integration is disabled. An Admin can enable it on its page."
    assert send(client, token).status_code == 202
    page = lead_client.get(reverse("conversations:integration_edit", args=[integration.pk])).content.decode()
    assert "by <strong>lead</strong>:\n      disabled" in page and "by <strong>lead</strong>:\n      enabled" in page


def test_rotating_the_token_shows_the_new_one_once_and_refuses_the_old(client, lead_client, integration_token):
    integration, old = integration_token

    response = lead_client.post(reverse("conversations:integration_rotate_token", args=[integration.pk]))

    new = re.search(r'value="(sb_[^"]+)"', response.content.decode()).group(1)
    assert response["Cache-Control"] == "no-store"
    assert send(client, old).status_code == 401
    assert send(client, new).status_code == 202
    page = lead_client.get(reverse("conversations:integration_edit", args=[integration.pk])).content.decode()
    assert "token rotated" in page and new not in page and new[:8] in page
    listing = lead_client.get(reverse("conversations:integrations")).content.decode()
    assert new not in listing


def test_a_new_signing_secret_signs_the_next_callbacks_and_is_shown_once(lead_client, integration_token):
    from connectors import crypto

    integration, _ = integration_token
    Integration.objects.filter(pk=integration.pk).update(callback_url="http://127.0.0.1:9/hook")

    response = lead_client.post(reverse("conversations:integration_signing_secret", args=[integration.pk]))

    secret = re.search(
        r'id="new-secret" class="secret" type="text" readonly value="([^"]+)"', response.content.decode()
    ).group(1)
    integration.refresh_from_db()
    assert crypto.decrypt(integration.callback_secret_encrypted) == secret
    page = lead_client.get(reverse("conversations:integration_edit", args=[integration.pk])).content.decode()
    assert "signing secret replaced" in page and secret not in page


def test_an_admin_creates_an_integration_from_the_dashboard(client, lead_client, connection, template):
    response = lead_client.post(
        reverse("conversations:integration_new"),
        {"name": "Shopbot", "templates": [template.pk], "connections": [connection.pk]},
    )

    token = re.search(r'value="(sb_[^"]+)"', response.content.decode()).group(1)
    integration = Integration.objects.get(name="Shopbot")
    assert integration.default_connection == connection  # the first allowed one
    body = {**MESSAGE, "template": template.name}
    answer = client.post("/api/v1/messages", data=json.dumps(body), content_type="application/json", **auth(token))
    assert answer.status_code == 202


def test_an_integration_needs_a_connection_and_is_warned_without_a_template(lead_client, connection, capsys):
    refused = lead_client.post(reverse("conversations:integration_new"), {"name": "Shopbot"})
    assert "Choose at least one connection: an integration without one cannot send anything" in refused.content.decode()
    with pytest.raises(CommandError, match="--connection is required.*known: Sandbox"):
        call_command("add_integration", "Shopbot")
    assert not Integration.objects.exists()

    created = lead_client.post(
        reverse("conversations:integration_new"), {"name": "Bot", "connections": [connection.pk]}
    )
    assert "only /api/v1/chat/completions works" in html.unescape(created.content.decode())
    call_command("add_integration", "Other bot", connection=[connection.name])
    assert "only /api/v1/chat/completions works" in capsys.readouterr().err


def test_the_default_connection_must_be_an_allowed_one(lead_client, connection, template):
    other = ConnectionFactory(name="Other")
    response = lead_client.post(
        reverse("conversations:integration_new"),
        {"name": "Shopbot", "connections": [connection.pk], "default_connection": other.pk},
    )
    assert "The default connection must be one of the connections it may use." in response.content.decode()
    assert not Integration.objects.exists()


def test_support_staff_cannot_manage_integrations(staff_client, integration_token):
    integration, _ = integration_token
    for url in [
        reverse("conversations:integrations"),
        reverse("conversations:integration_edit", args=[integration.pk]),
    ]:
        assert staff_client.get(url).status_code == 403
    response = staff_client.post(reverse("conversations:integration_rotate_token", args=[integration.pk]))
    assert response.status_code == 403


def test_replacing_a_connection_key_shows_in_its_history_without_the_key(lead_client, connection):
    data = {
        "name": connection.name,
        "provider": "mistral",
        "base_url": connection.base_url,
        "api_key": "sk-replaced-key-55555555",
        "model": connection.model,
        "timeout_seconds": "30",
        "max_attempts": "3",
    }
    lead_client.post(reverse("connectors:edit", args=[connection.pk]), data)
    page = lead_client.get(reverse("connectors:edit", args=[connection.pk])).content.decode()
    assert "API key replaced" in page and "sk-replaced-key-55555555" not in page


def test_widening_an_integrations_scope_shows_in_its_history(lead_client, integration_token):
    integration, _ = integration_token
    production = ConnectionFactory(name="Production")
    url = reverse("conversations:integration_edit", args=[integration.pk])

    lead_client.post(
        url,
        {
            "name": integration.name,
            "templates": [t.pk for t in integration.templates.all()],
            "connections": [c.pk for c in integration.connections.all()] + [production.pk],
            "default_connection": integration.default_connection_id,
        },
    )

    page = lead_client.get(url).content.decode()
    assert "connections: added Production" in page


def test_a_new_default_connection_shows_in_the_history_by_name(lead_client, integration_token):
    """A new user's walk read "default_connection: 1 → 2"."""
    integration, _ = integration_token
    production = ConnectionFactory(name="Production")
    url = reverse("conversations:integration_edit", args=[integration.pk])

    lead_client.post(
        url,
        {
            "name": integration.name,
            "templates": [t.pk for t in integration.templates.all()],
            "connections": [integration.default_connection_id, production.pk],
            "default_connection": production.pk,
        },
    )

    page = html.unescape(lead_client.get(url).content.decode())
    assert "default_connection: 'Sandbox' → 'Production'" in page


def test_an_integration_made_in_the_admin_shows_its_token_once_and_sets_no_cookie(admin_client, connection):
    response = admin_client.post(
        reverse("admin:conversations_integration_add"),
        {"name": "From the admin", "connections": [connection.pk], "callback_url": "http://127.0.0.1:9/hook"},
    )

    token = re.search(r'value="(sb_[^"]+)"', response.content.decode()).group(1)
    assert "no-store" in response["Cache-Control"]
    assert all(token not in str(cookie) for cookie in response.cookies.values())
    assert Integration.objects.get(name="From the admin").token_hint == token[:8]
