"""A person chats as a WhatsApp customer with the simulated customer page, through the real webhook and send path."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from conversations.models import WhatsAppChannel
from tests.factories import ConnectionFactory, TemplateFactory

from .conftest import screenshot

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_simulated_customer_gets_answers(sandbox, celery_worker, logged_in_page, live_server):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    TemplateFactory(name="Support")
    call_command(
        "add_whatsapp_channel",
        "Shop",
        phone_number_id="106540352242922",
        app_secret="s3cret",
        access_token="t0ken",
        template="Support",
        connection="Sandbox",
        var=["business_name=Acme"],
        graph_base_url=sandbox.base_url.removesuffix("/v1"),
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )
    page = logged_in_page
    page.click("nav >> text=WhatsApp")
    expect(page.locator("table.log")).to_contain_text("/whatsapp/")
    page.click("text=Simulated customer")
    page.fill("input[name=text]", "Hi! Do you have the red one?")
    page.click("button:has-text('Send')")

    expect(page.locator(".wa-mine")).to_contain_text("Hi! Do you have the red one?")
    expect(page.locator(".wa-theirs").first).to_contain_text(
        "Sandbox reply from mistral-small-latest: you said 'Hi! Do you have the red one?'.", timeout=10000
    )
    assert WhatsAppChannel.objects.get().conversations.count() == 1
    screenshot(page, "whatsapp-simulator")


def test_the_next_message_can_be_typed_while_one_is_sent(sandbox, celery_worker, logged_in_page, live_server):
    """The page never reloads under someone typing: the box empties at once and keeps the focus."""
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    TemplateFactory(name="Support")
    call_command(
        "add_whatsapp_channel", "Shop", phone_number_id="106540352242922", app_secret="s3cret",
        access_token="t0ken", template="Support", connection="Sandbox", var=["business_name=Acme"],
        graph_base_url=sandbox.base_url.removesuffix("/v1"), burst_seconds=0,
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )  # fmt: skip
    page = logged_in_page
    page.goto(f"{live_server.url}/whatsapp/{WhatsAppChannel.objects.get().pk}/simulator/")
    page.evaluate("window.sameDocument = true")
    box = page.locator("input[name=text]")
    box.fill("Where is my order?")
    box.press("Enter")
    page.keyboard.type("And can I pay by card?")  # straight away, without clicking back into the box
    box.press("Enter")

    expect(page.locator(".wa-mine")).to_have_text(
        [re.compile(r"Where is my order\?"), re.compile(r"And can I pay by card\?")]
    )
    expect(box).to_be_focused()
    expect(box).to_have_value("")
    assert page.evaluate("window.sameDocument") is True
    expect(page.locator(".wa-theirs:not(.typing)")).to_have_count(2, timeout=10000)


def test_a_message_refused_on_its_own_shows_as_not_sent_with_why(sandbox, logged_in_page, live_server, settings):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    TemplateFactory(name="Support")
    call_command(
        "add_whatsapp_channel", "Shop", phone_number_id="106540352242922", app_secret="s3cret",
        access_token="t0ken", template="Support", connection="Sandbox", var=["business_name=Acme"],
        graph_base_url=sandbox.base_url.removesuffix("/v1"), stdout=open("/dev/null", "w"),  # noqa: SIM115
    )  # fmt: skip
    settings.MAX_CUSTOMER_MESSAGE_BYTES = 50
    page = logged_in_page
    page.goto(f"{live_server.url}/whatsapp/{WhatsAppChannel.objects.get().pk}/simulator/")
    page.fill("input[name=text]", "A message much longer than this channel takes, said at length.")
    page.press("input[name=text]", "Enter")
    expect(page.locator(".bubble.failed")).to_contain_text("Not sent:")
