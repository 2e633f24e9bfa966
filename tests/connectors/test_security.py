"""Secrets at rest, server-side request forgery, login throttling and the production security settings."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.views.debug import ExceptionReporter

from connectors import http
from connectors.errors import ErrorKind, ProviderError
from connectors.models import ProviderConnection, decrypted_api_key
from connectors.safety import check_reachable, url_problem
from tests.factories import ConnectionFactory
from tests.processes import ROOT

REPORT_SECRET = "sb-report-secret-77aa"
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.mark.django_db
def test_rotate_keys_moves_every_key_to_the_new_encryption_key(settings, capsys):
    settings.FIELD_ENCRYPTION_KEY = [OLD]
    ConnectionFactory(api_key="sb-rotate-me-0000001")

    settings.FIELD_ENCRYPTION_KEY = [NEW, OLD]
    call_command("rotate_keys")
    settings.FIELD_ENCRYPTION_KEY = [NEW]

    assert decrypted_api_key(ProviderConnection.objects.get()) == "sb-rotate-me-0000001"
    assert "Re-encrypted 1 secret(s)" in capsys.readouterr().out


@pytest.mark.django_db
def test_rotate_keys_without_the_old_key_changes_nothing(settings):
    settings.FIELD_ENCRYPTION_KEY = [OLD]
    ConnectionFactory(name="Main", api_key="sb-rotate-me-0000001")
    before = ProviderConnection.objects.get().api_key_encrypted

    settings.FIELD_ENCRYPTION_KEY = [NEW]
    with pytest.raises(CommandError, match="Provider connection 'Main'.*keep the old key"):
        call_command("rotate_keys")
    assert ProviderConnection.objects.get().api_key_encrypted == before


@pytest.mark.django_db
def test_a_key_unreadable_after_losing_the_encryption_key_is_a_clear_config_error(settings, connection, template):
    from conversations import delivery, services

    settings.FIELD_ENCRYPTION_KEY = [NEW]
    call = services.call_send(
        connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
    )
    call = delivery.call_execute(call_id=call.pk)
    assert call.error_kind == ErrorKind.CONFIG
    assert "cannot be decrypted with FIELD_ENCRYPTION_KEY" in call.error_message


@pytest.mark.django_db
def test_an_error_report_never_shows_the_key(monkeypatch, sandbox, template, caplog):
    """Django's error report (the 500 page in DEBUG, the admins' email) lists every frame's variables."""
    from conversations import delivery, services

    connection = ConnectionFactory(base_url=sandbox.base_url, api_key=REPORT_SECRET)
    call = services.call_send(
        connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
    )

    def explode(*args, **kwargs):  # deep in the HTTP stack, with the Authorization header in its arguments
        raise RuntimeError("connection pool exploded")

    monkeypatch.setattr(http.pool(), "connection_from_host", explode)
    with caplog.at_level(logging.ERROR):
        delivery.call_execute(call_id=call.pk)
    logged = next(r for r in caplog.records if r.exc_info)
    report = ExceptionReporter(None, *logged.exc_info).get_traceback_html()

    assert "connection pool exploded" in report
    assert REPORT_SECRET not in report
    call.refresh_from_db()  # and the call is a recorded failure, not stuck
    assert (call.status, call.error_kind) == ("failed", "internal")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://api.example.com/v1", "plain http"),
        ("https://169.254.169.254/latest/meta-data", "internal address"),
        ("https://10.1.2.3/v1", "internal address"),
        ("https://[::1]/v1", "internal address"),
        ("ftp://api.mistral.ai/v1", "is not a web address"),
        ("https://user:sk-secret@api.mistral.ai/v1", "may not carry a user name or password"),
        ("https://api.mistral.ai:99999/v1", "not a valid URL"),
        ("api.mistral.ai/v1", "is not a web address"),
    ],
)
def test_unsafe_base_urls_are_refused_with_the_reason(url, problem):
    assert problem in url_problem(url)


def test_listed_hosts_and_public_https_are_fine():
    assert url_problem("https://api.mistral.ai/v1") is None
    assert url_problem("http://127.0.0.1:8765/v1") is None  # ALLOWED_PROVIDER_HOSTS in test settings


def test_a_name_that_resolves_inside_the_network_is_refused_before_sending(settings):
    settings.ALLOWED_PROVIDER_HOSTS = []
    with pytest.raises(ProviderError) as caught:
        check_reachable("https://localhost/v1")
    assert caught.value.kind == ErrorKind.CONFIG
    assert (
        "localhost is an internal address" in caught.value.message and "ALLOWED_PROVIDER_HOSTS" in caught.value.message
    )


@pytest.mark.django_db
def test_the_admin_refuses_an_unsafe_base_url(admin_client):
    response = admin_client.post(
        reverse("admin:connectors_providerconnection_add"),
        {
            "name": "Evil",
            "provider": "mistral",
            "base_url": "http://169.254.169.254/v1",
            "api_key": "k" * 20,
            "model": "mistral-small-latest",
            "timeout_seconds": "30",
            "max_attempts": "3",
        },
    )
    assert response.status_code == 200
    assert "plain http" in response.content.decode()
    assert not ProviderConnection.objects.exists()


@pytest.mark.django_db
def test_logins_are_locked_after_repeated_failures(client, django_user_model, settings):
    django_user_model.objects.create_user("agent", password="right-password-1")
    url = reverse("login")
    wrong = client.post(url, {"username": "agent", "password": "wrong"}).content.decode()
    assert wrong.count("do not match an account") == 1  # said once, not twice
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(url, {"username": "agent", "password": "wrong"})

    response = client.post(url, {"username": "agent", "password": "right-password-1"})

    page = response.content.decode()
    assert response.status_code == 429
    assert "Too many failed logins" in page and "<strong>agent</strong> is" in page
    settings_minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    assert f"locked out for {settings_minutes} minutes after {settings.AXES_FAILURE_LIMIT} wrong passwords" in page
    assert 'href="/accounts/login/?username=agent"' in page
    assert "_auth_user_id" not in client.session
    assert 'value="agent"' in client.get(url, {"username": "agent"}).content.decode()  # the link back fills it in


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["conversations:test_send", "api:docs"])
def test_pages_carry_a_content_security_policy(admin_client, page):
    response = admin_client.get(reverse(page))
    assert "script-src 'self'" in response["Content-Security-Policy"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "page", ["conversations:list", "conversations:calls", "conversations:overview", "conversations:export_csv"]
)
def test_no_cache_keeps_a_page_shown_to_someone_logged_in(staff_client, page):
    response = staff_client.get(reverse(page))
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert "private" in response["Cache-Control"]


@pytest.mark.django_db
def test_the_json_api_answers_without_the_pages_headers_or_cookies(admin_client, integration_token):
    """config/dashboard_middleware.py: no page to protect, no flash messages to keep, even for a browser that is
    logged in to the dashboard."""
    _, token = integration_token
    response = admin_client.get("/api/v1/models", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200 and response.json()["data"]
    assert "Content-Security-Policy" not in response
    assert "messages" not in response.cookies


def test_check_deploy_is_clean_with_production_settings():
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}  # nothing of the test run
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.base",
        SECRET_KEY="a-long-random-production-secret-key-" + "x9Qz" * 10,
        FIELD_ENCRYPTION_KEY=NEW,
        ALLOWED_HOSTS="switchboard.example.com",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
