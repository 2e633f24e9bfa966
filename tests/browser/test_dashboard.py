"""Support staff and admins in the dashboard: connections, logs, exports, the overview, and what roles allow."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from playwright.sync_api import expect

from connectors.models import ProviderConnection
from conversations import delivery, services
from tests.factories import ConnectionFactory, TemplateFactory

from .conftest import log_in, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def history(sandbox, broker_url):
    """A few answered and failed conversations, made the way the worker makes them."""
    good = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=1)
    bad = ConnectionFactory(name="Old key", base_url=sandbox.base_url, api_key="wrong-key", max_attempts=1)
    template = TemplateFactory(name="Support bot", system_prompt="You help customers of {{business_name}}.")
    for n, (connection, text) in enumerate(
        [
            (good, "Do you deliver to Lyon?"),
            (good, "<b>Bold</b> question"),
            (bad, "Is anyone there?"),
            (good, "Thanks!"),
        ]
    ):
        call = services.call_send(
            connection=connection,
            template=template,
            customer_message=text,
            variables={"business_name": "Acme"},
            contact=f"+33 6 00 00 00 0{n}",
        )
        delivery.call_execute(call_id=call.pk)
    return good


def test_staff_check_a_connection_and_see_the_models(logged_in_page, live_server, history):
    page = logged_in_page
    page.click("nav >> text=Connections")
    expect(page.locator("table.log")).to_contain_text("Sandbox")
    expect(page.locator("table.log")).not_to_contain_text("sb-test-key")
    sandbox = ProviderConnection.objects.get(name="Sandbox")
    page.locator("tr", has_text="Sandbox").get_by_role("button", name="Check connection").click()

    result = page.locator(f"#check-result-{sandbox.pk}")  # in a row right under the connection's own
    expect(result).to_contain_text("OK")
    expect(page.locator(f"#check-{sandbox.pk}")).to_contain_text("OK in")  # its "Last check" cell, no reload
    expect(result).to_contain_text("A one-token chat with mistral-small-latest answered in")
    expect(result).to_contain_text("8 models available to this key")
    screenshot(page, "connections")

    old = ProviderConnection.objects.get(name="Old key")
    page.locator("tr", has_text="Old key").get_by_role("button", name="Check connection").click()
    result = page.locator(f"#check-result-{old.pk}")
    expect(result).to_contain_text("Authentication: Unauthorized (HTTP 401)")
    expect(result).to_contain_text("Paste the full key into the connection again")
    expect(result).to_contain_text("Only an Admin can change a connection: send them this.")  # staff cannot


def test_staff_cannot_open_a_connections_edit_page(logged_in_page, live_server, history):
    page = logged_in_page
    page.goto(f"{live_server.url}/connections/")
    expect(page.get_by_role("link", name="Sandbox")).to_have_count(0)  # no edit link for their role

    response = page.goto(f"{live_server.url}/connections/{history.pk}/")

    assert response.status == 403
    expect(page.locator("h1")).to_have_text("You don't have access to this page")


def test_staff_filter_the_call_log_and_export_it(logged_in_page, live_server, history):
    page = logged_in_page
    page.click("nav >> text=Calls")
    expect(page.locator("table.log tbody tr")).to_have_count(4)
    page.select_option("select[name=status]", "failed")
    page.click("button:has-text('Filter')")

    rows = page.locator("table.log tbody tr")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Authentication: Unauthorized")
    screenshot(page, "calls")

    with page.expect_download() as download:
        page.click("text=CSV")
    exported = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text(encoding="utf-8"))))
    assert [(r["status"], r["error_kind"], r["connection"]) for r in exported] == [("failed", "auth", "Old key")]
    assert exported[0]["customer_message"] == "Is anyone there?"


def test_a_conversation_reads_as_a_transcript(logged_in_page, live_server, history):
    page = logged_in_page
    page.click("nav >> text=Conversations")
    expect(page.locator("table.log tbody tr")).to_have_count(4)
    screenshot(page, "conversations")
    page.fill("input[name=contact]", "+33 6 00 00 00 01")
    page.click("button:has-text('Filter')")
    expect(page.locator("table.log tbody tr")).to_have_count(1)
    page.locator("table.log tbody tr a").first.click()

    expect(page.locator(".bubble.user")).to_contain_text("<b>Bold</b> question")  # shown as text, not markup
    expect(page.locator(".bubble.assistant")).to_contain_text("Sandbox reply from mistral-small-latest")
    page.locator("details.attempt summary").first.click()
    expect(page.locator("details.attempt pre").first).to_contain_text('"role": "system"')
    screenshot(page, "conversation")


def test_staff_read_the_templates(logged_in_page, live_server, history):
    page = logged_in_page
    page.click("nav >> text=Templates")
    expect(page.locator("article.template")).to_contain_text("{{business_name}}")
    expect(page.get_by_role("link", name="Add a template")).to_have_count(0)
    screenshot(page, "templates")


def test_the_overview_shows_volume_errors_and_cost(logged_in_page, live_server, history):
    page = logged_in_page
    page.click("nav >> text=Overview")

    expect(page.locator(".stats")).to_contain_text("4 customer messages")
    expect(page.locator(".stats")).to_contain_text("25.0% not answered (1)")
    expect(page.locator("#chart-hourly")).to_be_visible()
    expect(page.get_by_text("Latest errors")).to_be_visible()
    expect(page.locator(".error-box").first).to_contain_text("Paste the full key into the connection again")
    screenshot(page, "overview")


def test_an_admin_edits_a_connection_and_sees_who_changed_what(page, live_server, history, team_admin):
    log_in(page, live_server, team_admin)
    page.goto(f"{live_server.url}/connections/{history.pk}/")
    expect(page.locator("input[name=api_key]")).to_have_value("")  # write-only
    page.fill("input[name=model]", "mistral-large-latest")
    page.fill("input[name=api_key]", "sb-a-brand-new-key-1234")
    page.click("button:has-text('Save')")

    changes = page.locator(".history")
    expect(changes).to_contain_text("by lead")
    expect(changes).to_contain_text("model: 'mistral-small-latest' → 'mistral-large-latest'")
    expect(changes).to_contain_text("API key replaced")
    expect(page.locator("body")).not_to_contain_text("sb-a-brand-new-key-1234")
    screenshot(page, "connection-edit")


def test_the_console_previews_the_exact_request(logged_in_page, live_server, history):
    page = logged_in_page
    page.goto(f"{live_server.url}/")  # again, now that the history fixture made the template
    page.select_option("#id_connection", label="Sandbox")
    page.fill("input[name=var_business_name]", "Acme Bikes")
    page.fill("#id_customer_message", "Hello")
    page.click("summary:has-text('Overrides')")
    page.fill("input[name=temperature]", "0.2")

    preview = page.locator("#preview-body")
    expect(preview).to_contain_text('"content": "You help customers of Acme Bikes."')
    expect(preview).to_contain_text('"temperature": 0.2')
    expect(page.locator("#preview")).to_contain_text("Authorization: Bearer …4b06 (the key is never shown)")
    expect(page.locator("#preview")).not_to_contain_text("sb-test-key")
