"""Changing the bot in a real browser with a real worker: an Admin edits a template with its live preview,
saves a draft, compares and publishes it; Support staff run a test set, watch it live, and compare two runs;
run_test_set gates a deployment."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from playwright.sync_api import expect

from conversations.models import PromptTemplate, TestSet, WhatsAppChannel
from tests.factories import ConnectionFactory

from .conftest import log_in, screenshot

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shop(sandbox):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=1)
    call_command("add_template", "Support bot", system="You help customers of {{business_name}}.", stdout=StringIO())
    call_command(
        "add_whatsapp_channel", "Shop", phone_number_id="106540352242922", app_secret="s", access_token="t",
        template="Support bot", connection="Sandbox", var=["business_name=Acme Bikes"], burst_seconds=0,
        graph_base_url=sandbox.base_url.removesuffix("/v1"), stdout=StringIO(),
    )  # fmt: skip
    for message, expected in [("Do you deliver on Sundays?", "Sundays"), ("Can I return a bike?", "warranty")]:
        call_command(
            "add_test_case", "Smoke", "--message", message, template="Support bot", var=["business_name=Acme"],
            expect_contains=[expected], max_chars=300, stdout=StringIO(),
        )  # fmt: skip
    return PromptTemplate.objects.get()


def test_an_admin_previews_saves_compares_and_publishes_a_version(shop, page, live_server, team_admin):
    log_in(page, live_server, team_admin)
    page.click("nav >> text=Templates")
    page.click("text=Support bot")
    system = page.locator("textarea[name=system_prompt]")
    system.fill("You help customers of {{business_name}}.\nAnswer in two sentences at most.")
    preview = page.locator("#template-preview")
    expect(preview).to_contain_text("You help customers of Acme Bikes.")  # the channel's value, while typing
    expect(preview).to_contain_text("Answer in two sentences at most.")
    page.locator("textarea[name=user_message]").fill("{customer_message}")
    expect(preview).to_contain_text("has single braces")
    page.locator("textarea[name=user_message]").fill("{{customer_message}}")

    page.click("button:has-text('Save as a draft')")
    expect(page.locator(".messages, main")).to_contain_text("Saved version 2 of Support bot as a draft")
    versions = page.locator("#versions")
    expect(versions.locator("tr", has_text="draft")).to_contain_text("System prompt +1 −0 lines")
    screenshot(page, "template-versions")

    versions.get_by_role("link", name="Compare with the published one").click()
    expect(page.locator("pre.diff .added")).to_have_text("+ Answer in two sentences at most.")
    screenshot(page, "template-diff")
    page.go_back()
    page.locator("#versions tr", has_text="draft").get_by_role("button", name="Publish").click()
    expect(page.locator("main")).to_contain_text("Published version 2")
    expect(page.locator("#versions tr", has=page.locator(".badge.succeeded"))).to_contain_text("2 published")
    expect(page.locator("#versions tr", has_text="First version")).to_contain_text("published before")
    assert PromptTemplate.objects.get().published.number == 2


def test_support_staff_run_a_test_set_live_and_compare_two_runs(shop, celery_worker, logged_in_page, live_server):
    call_command("add_template", "Support bot", system="You help {{business_name}}. Be brief.", stdout=StringIO())
    page = logged_in_page
    page.click("nav >> text=Test sets")
    page.click("text=Smoke")
    for version in ["1", "2"]:
        page.select_option("#run-version", version)
        page.click("button:has-text('Run 2 cases')")
        expect(page.locator("#run")).to_contain_text("passed", timeout=15000)
        expect(page.locator("#run .badge").first).to_have_text("1/2 passed", timeout=15000)
        expect(page.locator("#run")).to_contain_text("does not contain “warranty”")
        page.click("#run h1 >> text=Smoke")
    screenshot(page, "test-set")
    page.click("button:has-text('Side by side')")
    table = page.locator("table.compare")
    expect(table.locator("th")).to_contain_text(["The customer writes", "version 1", "version 2"])
    expect(table.locator("tbody tr")).to_have_count(2)
    screenshot(page, "test-runs-compared")


def test_run_test_set_with_the_worker_passes_or_fails_a_pipeline(shop, celery_worker):
    TestSet.objects.get().cases.filter(turns=["Can I return a bike?"]).update(expect_contains=["return"])
    out = StringIO()
    call_command("run_test_set", "Smoke", connection="Sandbox", wait=30, stdout=out)
    assert out.getvalue().splitlines()[-1] == "2/2 passed"

    call_command(
        "add_test_case", "Smoke", "--message", "Hello", template="Support bot", var=["business_name=Acme"],
        expect_not_contains=["Hello"], stdout=StringIO(),
    )  # fmt: skip
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 3 did not pass"):
        call_command("run_test_set", "Smoke", connection="Sandbox", version=1, wait=30, stdout=out)
    assert "FAIL 3 “Hello”: the reply contains “Hello”" in out.getvalue()
    assert WhatsAppChannel.objects.exists()
