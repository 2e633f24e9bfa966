"""Support staff step in, seen from both sides: the simulated WhatsApp customer's phone and the dashboard.

Real processes throughout: the live server, a Celery worker on Redis, the sandbox provider and its Graph
API stand-in. The customer writes through the signed webhook path; what reaches their phone comes back
through the Graph API send endpoint, as it would from Meta.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import expect

from conversations.models import Call, Conversation, WhatsAppChannel
from tests.factories import ConnectionFactory, TemplateFactory

from .conftest import screenshot

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
REPLY_TIMEOUT = 15_000  # ms: a worker's first call warms up its connection pool


@pytest.fixture
def shop(sandbox, celery_worker):
    def make(model="mistral-small-latest", burst_seconds=0):
        ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, model=model, max_attempts=1)
        TemplateFactory(name="Support")
        call_command(
            "add_whatsapp_channel", "Shop", phone_number_id="106540352242922", app_secret="s3cret",
            access_token="t0ken", template="Support", connection="Sandbox", var=["business_name=Acme"],
            burst_seconds=burst_seconds, graph_base_url=sandbox.base_url.removesuffix("/v1"),
            stdout=open("/dev/null", "w"),  # noqa: SIM115
        )  # fmt: skip
        return WhatsAppChannel.objects.get()

    return make


def open_phone(page, live_server, channel):
    page.goto(f"{live_server.url}/whatsapp/{channel.pk}/simulator/")


def write(page, text: str) -> None:
    page.fill("input[name=text]", text)
    page.click(".wa-compose button")
    expect(page.locator(".wa-mine").last).to_contain_text(text)


def replies(page):
    return page.locator(".wa-theirs:not(.typing)")


def test_three_quick_messages_get_one_answer_and_blue_ticks(shop, logged_in_page, live_server):
    channel = shop(burst_seconds=2)
    page = logged_in_page
    open_phone(page, live_server, channel)

    for text in ["Hi", "I ordered a lamp", "Where is it?"]:
        write(page, text)

    expect(replies(page)).to_have_count(1, timeout=REPLY_TIMEOUT)
    expect(replies(page).first).to_contain_text("you said 'Where is it?'")
    expect(page.locator(".wa-mine .ticks.read")).to_have_count(3)  # each marked read as it arrived
    page.wait_for_timeout(2500)  # a second answer would have come by now
    expect(replies(page)).to_have_count(1)
    call = Call.objects.get()
    assert [m["content"] for m in call.request["messages"] if m["role"] == "user"][-3:] == [
        "Hi",
        "I ordered a lamp",
        "Where is it?",
    ]


def test_a_long_markdown_reply_arrives_formatted_in_parts(shop, logged_in_page, live_server):
    channel = shop(model="sandbox-markdown")
    page = logged_in_page
    open_phone(page, live_server, channel)

    write(page, "Tell me everything about delivery")

    expect(replies(page)).to_have_count(3, timeout=REPLY_TIMEOUT)  # about 9,000 characters: three parts
    bubbles = replies(page).all_inner_texts()
    assert all(len(text) <= 4200 for text in bubbles)  # 4,096 and the time
    assert not any("**" in text or "## " in text for text in bubbles)  # Markdown turned into WhatsApp's marks
    expect(page.locator(".wa-theirs strong").first).to_be_visible()  # *bold* shown bold, as the phone does
    screenshot(page, "whatsapp-simulator-long-reply")


def test_a_customer_asks_for_a_person_who_takes_over_replies_and_hands_back(shop, logged_in_page, live_server, browser):
    channel = shop()
    phone = logged_in_page
    open_phone(phone, live_server, channel)
    write(phone, "Hi")
    expect(replies(phone)).to_have_count(1, timeout=REPLY_TIMEOUT)

    write(phone, "I want to talk to a human")
    expect(replies(phone).last).to_contain_text("A person from our team will answer you here shortly")
    assert Call.objects.count() == 1  # asking for a person is no provider call

    desk = phone.context.new_page()  # the support agent, in another tab
    desk.goto(f"{live_server.url}/inbox/")
    expect(desk.locator("#inbox-count .nav-count")).to_have_text("1")
    row = desk.locator("#inbox-rows tbody tr").first
    expect(row).to_contain_text("+15550100100")
    expect(row).to_contain_text("Asked for a person")
    screenshot(desk, "inbox")
    row.get_by_role("button", name="Assign to me").click()
    desk.goto(f"{live_server.url}/conversations/{Conversation.objects.get().pk}/")
    expect(desk.locator("#handling")).to_contain_text("With agent")

    write(phone, "Hello? Is anyone there?")
    expect(desk.locator("#transcript")).to_contain_text("Hello? Is anyone there?", timeout=10_000)  # live
    desk.fill("#staff-reply", "Hi, I am **Ana**. Your lamp leaves today.")
    desk.get_by_role("button", name="Send reply").click()
    expect(replies(phone).last).to_contain_text("Hi, I am Ana. Your lamp leaves today.", timeout=REPLY_TIMEOUT)
    expect(replies(phone).last.locator("strong")).to_have_text("Ana")
    assert Call.objects.count() == 1  # no bot answer while a person holds the conversation
    screenshot(desk, "conversation-taken-over")

    desk.get_by_role("button", name="Hand back to the bot").click()
    expect(desk.locator("#handling")).to_contain_text("The bot answers")
    write(phone, "Thanks! One more question")
    expect(replies(phone).last).to_contain_text("you said 'Thanks! One more question'", timeout=REPLY_TIMEOUT)


def test_stop_silences_automatic_replies_until_start(shop, logged_in_page, live_server):
    channel = shop()
    page = logged_in_page
    open_phone(page, live_server, channel)

    write(page, "STOP")
    expect(replies(page).last).to_contain_text("You will get no more automatic messages", timeout=REPLY_TIMEOUT)
    write(page, "Hello?")
    page.wait_for_timeout(2000)
    expect(replies(page)).to_have_count(1)  # nothing automatic while opted out
    assert not Call.objects.exists()

    write(page, "START")
    expect(replies(page).last).to_contain_text("automatic replies are on again", timeout=REPLY_TIMEOUT)
    write(page, "Do you ship to Lyon?")
    expect(replies(page).last).to_contain_text("you said 'Do you ship to Lyon?'", timeout=REPLY_TIMEOUT)


def test_once_the_24_hour_window_closes_the_reply_box_says_why_it_cannot_send(shop, logged_in_page, live_server):
    channel = shop()
    page = logged_in_page
    open_phone(page, live_server, channel)
    write(page, "agent")
    expect(replies(page)).to_have_count(1, timeout=REPLY_TIMEOUT)
    Conversation.objects.update(last_customer_at=timezone.now() - timedelta(hours=25))

    page.goto(f"{live_server.url}/conversations/{Conversation.objects.get().pk}/")
    page.get_by_role("button", name="Take over").click()

    expect(page.locator("#reply")).to_contain_text("WhatsApp's 24-hour window closed")
    expect(page.locator("#reply")).to_contain_text("until the customer writes again")
    expect(page.get_by_role("button", name="Send reply")).to_be_disabled()
    expect(page.locator("#staff-reply")).to_be_disabled()
