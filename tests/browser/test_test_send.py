"""A person at the test console: pick a template, fill its variables, send, and watch the reply arrive."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.factories import ConnectionFactory, TemplateFactory

from .conftest import screenshot

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sandbox_setup(sandbox):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    TemplateFactory(name="Support bot", system_prompt="You help customers of {{business_name}} ({{city}}).")
    TemplateFactory(name="Plain", system_prompt="Be brief.")


def test_a_test_send_shows_the_reply_without_a_reload(celery_worker, sandbox_setup, logged_in_page):
    page = logged_in_page
    page.select_option("#id_template", label="Plain")
    expect(page.get_by_text("This template has no variables")).to_be_visible()
    page.select_option("#id_template", label="Support bot")
    page.fill("input[name=var_business_name]", "Acme Bikes")
    page.fill("input[name=var_city]", "Lyon")
    page.fill("#id_customer_message", "Do you repair <b>e-bikes</b>?")
    page.click("button:has-text('Send')")

    reply = page.locator(".reply")
    expect(reply).to_have_text(
        "Sandbox reply from mistral-small-latest: you said 'Do you repair <b>e-bikes</b>?'.", timeout=5000
    )
    expect(page.locator(".badge")).to_have_text("Succeeded")
    expect(page.locator(".call .meta")).to_contain_text(re.compile(r"\d+ ms\s+·\s+\d+ \+ \d+ tokens"))
    screenshot(page, "test-send")


def test_a_wrong_key_shows_the_cause_and_fix(celery_worker, sandbox_setup, logged_in_page):
    from connectors.models import ProviderConnection

    connection = ProviderConnection.objects.get()
    connection.set_api_key("wrong-key")
    connection.save()
    page = logged_in_page
    page.select_option("#id_template", label="Plain")
    page.fill("#id_customer_message", "Hello?")
    page.click("button:has-text('Send')")

    error = page.locator(".error-box")
    expect(error).to_contain_text("Authentication: Unauthorized (HTTP 401)", timeout=5000)
    expect(error).to_contain_text("Likely cause: The API key is wrong, revoked or missing.")
    expect(error).to_contain_text("Fix: Paste the full key into the connection again")
    screenshot(page, "test-send-error")
