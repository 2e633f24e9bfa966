"""The API key is a secret: it is stored encrypted and appears nowhere a person or a log could read it."""

from __future__ import annotations

import logging

import pytest
from django.db import connection as db
from django.test import Client
from django.urls import reverse

from connectors.models import decrypted_api_key
from conversations import delivery, services
from conversations.models import Call

pytestmark = pytest.mark.django_db

SECRET = "sb-live-9d1e5c7a3b2f4e60a8c1"


@pytest.fixture
def keyed(connection):
    connection.set_api_key(SECRET)
    connection.save()
    return connection


def send(connection, template, model=None):
    if model:
        connection.model = model
        connection.save()
    call = services.call_send(
        connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
    )
    return delivery.call_execute(call_id=call.pk)


def every_stored_text() -> str:
    """Every column of every row of every table, as text: what someone with the database file would see."""
    chunks = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names():
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")  # noqa: S608 - names from introspection
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_the_key_is_encrypted_at_rest(keyed):
    assert decrypted_api_key(keyed) == SECRET
    assert SECRET not in every_stored_text()
    assert keyed.key_hint == "…a8c1"


def test_the_key_is_not_in_stored_requests_responses_or_logs(keyed, template, caplog):
    caplog.set_level(logging.DEBUG)

    ok = send(keyed, template)
    echoed = send(keyed, template, model="sandbox-echo-key")

    assert ok.status == Call.Status.SUCCEEDED
    assert echoed.error_kind == "auth" and "[redacted]" in echoed.error_message
    assert SECRET not in every_stored_text()
    assert SECRET not in caplog.text


@pytest.mark.parametrize("key", ['sk-with"quote-and\\back/slash-1234', "sk-plus+amp&amp<tag>%25-5678"])
def test_a_key_a_provider_echoes_escaped_is_redacted_in_every_spelling(connection, template, key):
    """A gateway that echoes the key writes it as JSON (\" and \\ escaped), a URL or HTML would: no spelling of
    it may reach a stored row."""
    from connectors.http import key_spellings

    connection.set_api_key(key)
    connection.save()
    echoed = send(connection, template, model="sandbox-echo-key")

    assert echoed.error_kind == "auth" and "[redacted]" in echoed.error_message
    stored = every_stored_text() + echoed.error_message + echoed.response_body
    assert not [form for form in key_spellings(key) if form in stored]


def test_the_admin_never_renders_the_key(keyed, template, admin_client):
    send(keyed, template, model="sandbox-echo-key")
    pages = [
        reverse("admin:connectors_providerconnection_changelist"),
        reverse("admin:connectors_providerconnection_change", args=[keyed.pk]),
        reverse("admin:conversations_call_changelist"),
        reverse("admin:conversations_call_change", args=[Call.objects.get().pk]),
        reverse("conversations:detail", args=[Call.objects.get().conversation_id]),
    ]
    for url in pages:
        html = admin_client.get(url).content.decode()
        assert SECRET not in html, url
    assert "…a8c1" in admin_client.get(pages[1]).content.decode()


def test_saving_the_admin_form_keeps_the_key_when_left_empty(keyed, admin_client):
    url = reverse("admin:connectors_providerconnection_change", args=[keyed.pk])
    data = {
        "name": keyed.name,
        "provider": keyed.provider,
        "base_url": keyed.base_url,
        "api_key": "",
        "model": "mistral-large-latest",
        "timeout_seconds": "30",
        "max_attempts": "3",
    }
    response = admin_client.post(url, data)

    assert response.status_code == 302
    keyed.refresh_from_db()
    assert decrypted_api_key(keyed) == SECRET and keyed.model == "mistral-large-latest"
    history = admin_client.get(reverse("admin:connectors_providerconnection_history", args=[keyed.pk]))
    assert SECRET not in history.content.decode()


def test_the_task_carries_only_the_call_id(keyed, template, django_capture_on_commit_callbacks, monkeypatch, ring_path):
    from config.celery import app
    from conversations import doorbell

    sent = []
    monkeypatch.setattr(app, "send_task", lambda name, args, **kwargs: sent.append((name, args)))
    monkeypatch.setattr(doorbell, "ring", lambda call_id: sent.append(("conversations.execute_call", (call_id,))))

    with django_capture_on_commit_callbacks(execute=True):
        call = services.call_send(
            connection=keyed, template=template, customer_message="Hi", variables={"business_name": "Acme"}
        )

    assert sent == [("conversations.execute_call", (call.pk,))]


def test_a_call_rung_claimed_carries_neither_the_key_nor_its_ciphertext(
    keyed, django_capture_on_commit_callbacks, monkeypatch, settings
):
    """A relayed chat request's ring carries the conversation its worker needs; the connection stays behind."""
    import json

    from conversations import doorbell
    from conversations.api.tokens import integration_create

    if db.vendor != "postgresql":
        pytest.skip("calls are inserted claimed on PostgreSQL only")
    settings.API_CHAT_WAIT_SECONDS = 0
    rung = []
    monkeypatch.setattr(doorbell, "taking_claimed", lambda: True)
    monkeypatch.setattr(doorbell, "ring_claimed", rung.append)
    _, token = integration_create(name="Bot", templates=[], connections=[keyed])

    with django_capture_on_commit_callbacks(execute=True):
        Client().post(
            "/api/v1/chat/completions",
            json.dumps({"messages": [{"role": "user", "content": "Hi"}]}),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )

    assert len(rung) == 1 and '"Hi"' in rung[0]
    keyed.refresh_from_db()
    assert SECRET not in rung[0] and keyed.api_key_encrypted not in rung[0]
    assert delivery.call_execute_claimed(rung[0].encode()).status == Call.Status.SUCCEEDED  # the key read by id


@pytest.fixture
def view_only_staff(django_user_model):
    """A Support-staff member who may also open the admin, and see (never change) every model in it."""
    from django.contrib.auth.models import Group, Permission

    user = django_user_model.objects.create_user("viewer", password="viewer-password-1", is_staff=True)
    user.groups.add(Group.objects.get(name="Support staff"))
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    return user


def test_no_page_ever_shows_a_secret_to_anyone(world, view_only_staff):
    """Every admin page of every model and every dashboard page, as a superuser and as a view-only staff
    user, with canary secrets stored: none of them appears anywhere."""
    from django.test import Client

    from tests.pages import CANARIES, admin_pages, dashboard_pages

    secrets = [*CANARIES.values(), world["token"], world["callback_secret"]]
    for user in (world["admin"], view_only_staff):
        client = Client(raise_request_exception=True)
        client.force_login(user)
        for path in admin_pages() + dashboard_pages(world):
            response = client.get(path)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert response.status_code in (200, 302, 403), (user.username, path, response.status_code)
            for secret in secrets:
                assert secret.encode() not in body, (user.username, path)
    viewer = Client()
    viewer.force_login(view_only_staff)
    change = viewer.get(reverse("admin:connectors_providerconnection_change", args=[world["connection"].pk]))
    assert "…1111" in change.content.decode()  # the hint, as everywhere
