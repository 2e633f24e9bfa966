"""End to end with real processes: a Celery worker on Redis, the sandbox on loopback, the test database."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from conversations.models import Call
from tests.helpers import wait_for_calls
from tests.processes import run_send_test

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_twenty_test_sends_are_all_answered_and_logged(celery_worker, connection, template):
    for n in range(20):
        call_command(
            "send_test",
            connection="Sandbox",
            template="Support",
            var=["business_name=Acme"],
            message=f"Question number {n}",
            contact=f"+1650555{n:04d}",
        )
    calls = list(Call.objects.order_by("id"))
    assert len(calls) == 20

    wait_for_calls(calls, seconds=60)

    for n, call in enumerate(calls):
        assert call.status == Call.Status.SUCCEEDED, (call.error_kind, call.error_message)
        assert call.reply_text == f"Sandbox reply from mistral-small-latest: you said 'Question number {n}'."
        assert call.prompt_tokens > 0 and call.completion_tokens > 0
        assert call.latency_ms is not None
        assert call.conversation.contact == f"+1650555{n:04d}"


def test_send_test_wait_prints_the_reply(celery_worker, subprocess_env, connection, template):
    result = run_send_test(subprocess_env, "--var", "business_name=Acme", "--message", "Open today?", "--wait", "20")

    assert result.returncode == 0, result.stderr
    assert "Sandbox reply from mistral-small-latest: you said 'Open today?'." in result.stdout


def test_send_test_wait_prints_the_error_and_fix(celery_worker, subprocess_env, connection, template):
    connection.set_api_key("wrong-key")
    connection.save()

    result = run_send_test(subprocess_env, "--var", "business_name=Acme", "--message", "Hi", "--wait", "20")

    assert result.returncode == 1
    assert "Authentication (HTTP 401): Unauthorized" in result.stderr
    assert "Fix: Paste the full key into the connection again" in result.stderr
