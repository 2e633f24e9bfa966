"""Fallbacks and the circuit breaker with a real worker process: the console shows which connection answered,
and failures the worker counted in Redis open the circuit that this process, and every other worker, reads."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from connectors import circuit
from conversations import services
from conversations.models import Call
from tests.factories import ConnectionFactory, TemplateFactory
from tests.helpers import wait_for_calls

from .conftest import screenshot

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def chain(sandbox, broker_url):
    keys = circuit.client().keys("sb:circuit:*")  # ids come round again in a fresh test database
    if keys:
        circuit.client().delete(*keys)
    backup = ConnectionFactory(name="Backup", base_url=sandbox.base_url, model="mistral-small-latest")
    primary = ConnectionFactory(name="Primary", base_url=sandbox.base_url, max_attempts=1, fallback=backup)
    TemplateFactory(name="Support bot", system_prompt="You help customers of {{business_name}}.")
    return primary, backup


def test_the_console_shows_the_fallback_that_answered(chain, celery_worker, logged_in_page, live_server):
    primary, _ = chain
    primary.set_api_key("wrong-revoked-key-0000")  # the sandbox refuses keys starting "wrong"
    primary.save()
    page = logged_in_page
    page.goto(f"{live_server.url}/")
    page.select_option("select[name=connection]", label="Primary")
    page.fill("input[name=var_business_name]", "Acme")
    page.fill("textarea[name=customer_message]", "Do you deliver on Sundays?")
    page.click("#send-form button[type=submit]")

    result = page.locator("#result")
    expect(result).to_contain_text("Sandbox reply from mistral-small-latest", timeout=15000)
    expect(result).to_contain_text("via Backup (the fallback of Primary)")
    expect(result).to_contain_text("Attempt 1 on Primary: Authentication: Unauthorized (HTTP 401)")
    screenshot(page, "console-fallback")


def test_failures_counted_by_the_worker_open_the_circuit_for_every_process(chain, celery_worker, settings):
    primary, backup = chain
    primary.model = "sandbox-overloaded"  # a 503 every time: transient, so it counts towards the circuit
    primary.save()
    template = TemplateFactory()

    def ask(text: str) -> list[Call]:
        call = services.call_send(
            connection=primary, template=template, customer_message=text, variables={"business_name": "Acme"}
        )
        wait_for_calls([call], 30)
        answered = call.latest_attempt()
        wait_for_calls([answered], 30)
        return list(Call.objects.filter(message_id=call.message_id).order_by("attempt"))

    for n in range(settings.CIRCUIT_FAILURES):
        attempts = ask(f"Question {n}")
        assert [a.connection.name for a in attempts] == ["Primary", "Backup"] and attempts[-1].reply_text

    assert circuit.state(primary).name == "open"  # read here, from what the worker process wrote to Redis
    skipped_first, answered = ask("One more")
    assert skipped_first.http_status is None and "so it is skipped" in skipped_first.error_message
    assert answered.connection == backup and answered.status == Call.Status.SUCCEEDED
