"""The operator commands, through call_command and, for send_test --wait, as a real process with a worker."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command

from connectors.models import ProviderConnection, decrypted_api_key
from conversations.models import Call
from tests.processes import ROOT

pytestmark = pytest.mark.django_db


def test_add_connection_creates_then_updates(sandbox, capsys):
    call_command("add_connection", "Main", base_url=sandbox.base_url, api_key="sb-first-key-123456", model="m1")
    call_command("add_connection", "Main", base_url=sandbox.base_url, api_key="sb-second-key-98765", model="m2")

    connection = ProviderConnection.objects.get()
    assert (connection.model, decrypted_api_key(connection), connection.key_hint) == (
        "m2",
        "sb-second-key-98765",
        "…8765",
    )
    out = capsys.readouterr().out
    assert "Created connection 'Main'" in out and "Updated connection 'Main'" in out
    assert "sb-first-key" not in out and "sb-second-key" not in out


def test_add_connection_refuses_plain_http_to_an_unlisted_host():
    with pytest.raises(CommandError, match="plain http.*ALLOWED_PROVIDER_HOSTS"):
        call_command("add_connection", "X", base_url="http://api.example.com/v1", api_key="k" * 20)
    assert not ProviderConnection.objects.exists()


def test_send_test_names_a_missing_variable(connection, template):
    with pytest.raises(CommandError, match=r"needs a value for \{\{business_name\}\}"):
        call_command("send_test", connection="Sandbox", template="Support", message="Hi")
    assert not Call.objects.exists()


def test_send_test_names_an_unknown_connection(connection, template):
    with pytest.raises(CommandError, match=r"No connection named 'Nope' \(known: Sandbox\)"):
        call_command("send_test", connection="Nope", template="Support", message="Hi")


@pytest.mark.parametrize("command", ["add_connection", "add_template", "send_test", "runsandbox", "runbroker"])
def test_every_command_has_help(command):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run(
        [sys.executable, "manage.py", command, "--help"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "usage:" in result.stdout


def test_send_test_refuses_text_that_is_not_utf8(connection, template):
    # A shell passes undecodable bytes through as surrogates; they must not reach the database.
    with pytest.raises(CommandError, match=r"not UTF-8 text \(at character 4\)"):
        call_command(
            "send_test", connection="Sandbox", template="Support", var=["business_name=A"], message="caf\udce9"
        )
    assert not Call.objects.exists()


def test_seed_logs_fills_the_log_in_time_order_like_a_real_one(connection, template):
    call_command("seed_logs", calls=30, days=2, stdout=open(os.devnull, "w"))  # noqa: SIM115

    calls = list(Call.objects.order_by("pk"))
    assert len(calls) == 30 and len({c.conversation_id for c in calls}) == 10
    queued = [c.queued_at for c in calls]
    assert queued == sorted(queued)  # newer rows have larger ids, as when calls arrive
    assert queued[-1] - queued[0] > timedelta(days=1.8)
    assert all(c.finished_at >= c.queued_at for c in calls)


def test_seed_demo_refuses_one_port_for_the_dashboard_and_the_sandbox(db, monkeypatch, settings):
    """The attack run started make run with WEB_PORT at the sandbox's default port: the web server could not
    bind, and the seeded connection pointed at the dashboard."""
    settings.DEBUG = True  # through the fixture only: mixed with override_settings, DEBUG outlived the test
    monkeypatch.setenv("WEB_PORT", str(settings.SANDBOX_PORT))
    with pytest.raises(CommandError, match=f"WEB_PORT and SANDBOX_PORT are both {settings.SANDBOX_PORT}"):
        call_command("seed_demo", stdout=io.StringIO())
    assert not ProviderConnection.objects.exists()


def test_seed_demo_says_when_the_demo_rows_call_another_port_than_this_runs_sandbox(db, monkeypatch, settings):
    """The attack run changed SANDBOX_PORT between runs: the seeded connection kept calling the old port, and
    nothing said so. The rows are left as they are (a local address may be a server someone chose)."""
    settings.DEBUG = True
    monkeypatch.setenv("WEB_PORT", "8000")
    settings.SANDBOX_PORT = 8765
    call_command("seed_demo", stdout=io.StringIO())
    settings.SANDBOX_PORT = 8766
    out = io.StringIO()
    call_command("seed_demo", stdout=out)

    assert ProviderConnection.objects.get(name="Sandbox").base_url == "http://127.0.0.1:8765/v1"
    assert (
        "Connection 'Sandbox' calls http://127.0.0.1:8765/v1, but this run's sandbox is at http://127.0.0.1:8766/v1"
        in out.getvalue()
    )
    assert "Channel 'Demo WhatsApp' calls http://127.0.0.1:8765, but this run's sandbox" in out.getvalue()

    # Pointed at a real provider: nothing to say.
    ProviderConnection.objects.filter(name="Sandbox").update(base_url="https://api.mistral.ai/v1")
    out = io.StringIO()
    call_command("seed_demo", stdout=out)
    assert "Connection 'Sandbox' calls" not in out.getvalue()
