"""A new user's first hour (issue 12), each stumble as a person now sees it in the browser, with a real worker."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from playwright.sync_api import expect

from conversations import delivery, services
from conversations.models import Call, WhatsAppChannel
from tests.factories import ConnectionFactory, TemplateFactory
from tests.helpers import execute_now

from .conftest import screenshot

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def setup(sandbox):
    connection = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=3)
    template = TemplateFactory(name="Support bot", system_prompt="You help customers of {{business_name}}.")
    return connection, template


def test_the_console_follows_a_message_through_its_retries(setup, logged_in_page, live_server, published):
    """The attempts are made here, one at a time (nothing reaches a worker), while the page watches."""
    connection, template = setup
    call = services.call_send(
        connection=connection,
        template=template,
        customer_message="Are you open?",
        variables={"business_name": "Acme"},
        overrides={"model": "sandbox-overloaded"},
    )
    delivery.call_execute(call_id=call.pk)  # attempt 1: 503; attempt 2 is queued
    page = logged_in_page
    page.goto(f"{live_server.url}/?call={call.pk}")

    result = page.locator("#result")
    expect(result).to_contain_text("Not answered yet: attempt 2 of 3")
    expect(result).not_to_contain_text("Likely cause")
    execute_now(call.latest_attempt().pk)
    execute_now(call.latest_attempt().pk)
    expect(result).to_contain_text("after 3 attempts", timeout=10000)  # the final verdict, without a reload
    expect(result).to_contain_text("Attempt 1: Provider error: Service tier capacity exceeded")
    expect(result.locator(".error-box")).to_contain_text("Nothing to fix on your side")


def test_send_again_on_a_later_turn_fills_in_that_turn(setup, logged_in_page, live_server):
    connection, template = setup
    first = services.call_send(
        connection=connection, template=template, customer_message="First", variables={"business_name": "Acme"}
    )
    later = services.conversation_reply(conversation=first.conversation, customer_message="The later one")

    logged_in_page.goto(f"{live_server.url}/?again={later.pk}")

    expect(logged_in_page.locator("#id_customer_message")).to_have_value("The later one")


def test_a_continued_conversation_updates_itself(celery_worker, setup, logged_in_page):
    page = logged_in_page
    page.fill("input[name=var_business_name]", "Acme")
    page.fill("#id_customer_message", "Hello")
    page.click("button:has-text('Send')")
    expect(page.locator(".reply")).to_be_visible(timeout=10000)
    page.click("text=Continue the conversation")
    page.fill("#id_customer_message", "And on Sundays?")
    page.click("button:has-text('Send')")

    transcript = page.locator("#transcript")
    expect(transcript.locator(".bubble.assistant")).to_have_count(2, timeout=10000)  # no reload
    expect(transcript).not_to_contain_text("send again")
    expect(page.locator("#attempts .badge.succeeded")).to_have_count(2)


def test_a_whatsapp_number_is_found_with_or_without_its_plus(celery_worker, setup, logged_in_page, sandbox):
    call_command(
        "add_whatsapp_channel", "Shop", phone_number_id="106540352242922", app_secret="s", access_token="t",
        template="Support bot", connection="Sandbox", var=["business_name=Acme"],
        graph_base_url=sandbox.base_url.removesuffix("/v1"), stdout=open("/dev/null", "w"),  # noqa: SIM115
    )  # fmt: skip
    page = logged_in_page
    page.goto(page.url + f"whatsapp/{WhatsAppChannel.objects.get().pk}/simulator/")
    page.fill("input[name=text]", "Hi from my phone")
    page.click("button:has-text('Send')")
    expect(page.locator(".wa-theirs").first).to_contain_text("Sandbox reply", timeout=10000)

    page.goto(page.url.split("/whatsapp/")[0] + "/conversations/?contact=%2B1555")
    expect(page.locator("table.log")).to_contain_text("+15550100100")


def test_the_console_shows_the_cost_or_says_it_is_not_priced(setup, logged_in_page, live_server, published):
    from decimal import Decimal

    from connectors.models import ModelPrice
    from conversations import prices

    connection, template = setup
    ModelPrice.objects.create(model="mistral-small-latest", input_per_million=Decimal("0.1"), output_per_million=1)
    prices.forget()
    priced = services.call_send(
        connection=connection, template=template, customer_message="How much?", variables={"business_name": "Acme"}
    )
    delivery.call_execute(call_id=priced.pk)
    unpriced = services.call_send(
        connection=connection,
        template=template,
        customer_message="And this?",
        variables={"business_name": "Acme"},
        overrides={"model": "open-mistral-nemo"},
    )
    delivery.call_execute(call_id=unpriced.pk)

    logged_in_page.goto(f"{live_server.url}/?call={priced.pk}")
    expect(logged_in_page.locator(".call .meta")).to_contain_text("$0.0000")
    logged_in_page.goto(f"{live_server.url}/?call={unpriced.pk}")
    expect(logged_in_page.locator(".call .meta")).to_contain_text("not priced (open-mistral-nemo has no price)")


def test_the_overview_card_of_tokens_and_cost_is_not_cut_off(setup, logged_in_page, live_server):
    connection, template = setup
    delivery.call_execute(
        call_id=services.call_send(
            connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
        ).pk
    )
    page = logged_in_page
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{live_server.url}/overview/")

    card = page.locator(".card.wide")
    expect(card).to_contain_text("Completion")
    box, table = card.bounding_box(), card.locator("table").bounding_box()
    assert table["width"] <= box["width"] and box["width"] > 1000  # the whole row, nothing clipped


def test_the_api_reference_lists_every_endpoint(logged_in_page, live_server):
    page = logged_in_page
    page.goto(f"{live_server.url}/api/docs/")
    reference = page.locator("#api-reference")
    for path in ["/api/v1/messages", "/api/v1/calls/{id}", "/api/v1/chat/completions"]:
        expect(reference).to_contain_text(path, timeout=10000)
    page.locator(".opblock-summary-control", has_text="/api/v1/messages").click()
    expect(reference).to_contain_text("message_id")
    expect(reference).to_contain_text("503")
    screenshot(page, "api-reference")


def test_the_simulators_compose_box_stays_in_view_in_a_long_chat(setup, logged_in_page, sandbox, live_server):
    from conversations import whatsapp
    from conversations.whatsapp.views import SIMULATED_WA_ID, simulated_payload

    call_command(
        "add_whatsapp_channel", "Shop", phone_number_id="106540352242922", app_secret="s", access_token="t",
        template="Support bot", connection="Sandbox", var=["business_name=Acme"], burst_seconds=0,
        graph_base_url=sandbox.base_url.removesuffix("/v1"), stdout=open("/dev/null", "w"),  # noqa: SIM115
    )  # fmt: skip
    channel = WhatsAppChannel.objects.get()
    for n in range(30):
        body = json.dumps(simulated_payload(channel, SIMULATED_WA_ID, f"Message number {n}")).encode()
        whatsapp.webhook_accept(channel=channel, raw_body=body, signature=whatsapp.sign(channel, body))
    assert Call.objects.count() == 30
    page = logged_in_page
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/whatsapp/{channel.pk}/simulator/")

    compose = page.locator("input[name=text]")
    expect(compose).to_be_in_viewport()
    # The newest message is in view too: the customer's last one, or a reply to it where a worker from an
    # earlier test in this session has answered already.
    expect(page.locator(".transcript.wa > li").last).to_be_in_viewport()


def test_a_chat_completions_conversation_and_an_invalid_model_read_right(setup, logged_in_page, live_server):
    from conversations.models import Conversation

    connection, template = setup
    chat = Conversation.objects.create(contact="api:Platform", connection=connection, template=None)
    failed = services.call_send(
        connection=connection,
        template=template,
        customer_message="Hi",
        variables={"business_name": "Acme"},
        overrides={"model": "mistral-tiny-2099"},
    )
    delivery.call_execute(call_id=failed.pk)
    page = logged_in_page

    page.goto(f"{live_server.url}/conversations/{chat.pk}/")
    expect(page.locator("h1 + .meta")).to_contain_text("chat completions")
    expect(page.locator("main")).not_to_contain_text("None")
    page.goto(f"{live_server.url}/calls/")
    expect(page.locator("table.log")).to_contain_text("Invalid model: mistral-tiny-2099")
    expect(page.locator("table.log")).not_to_contain_text("Invalid model: Invalid model")


def test_the_api_edges_a_new_integrator_meets(setup, page, live_server):
    """Items 10 to 12, through the browser's own HTTP client: a key reused with another body, a misspelt
    field, and the wrong method, each a JSON error that says what to do."""
    from conversations.api.tokens import integration_create

    connection, template = setup
    _, token = integration_create(name="Platform", templates=[template], connections=[connection])
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "order-1"}
    body = {"template": "Support bot", "contact": "+15550001111", "message": "Hi", "variables": {"business_name": "A"}}
    api = page.request

    first = api.post(f"{live_server.url}/api/v1/messages", data=body, headers=headers)
    assert first.status in (200, 202)  # 200 when a worker from an earlier test in the session answered at once
    reused = api.post(f"{live_server.url}/api/v1/messages", data={**body, "message": "Other"}, headers=headers)
    assert reused.status == 422 and "first used with a different body" in reused.json()["error"]["message"]
    misspelt = api.post(f"{live_server.url}/api/v1/messages", data={**body, "wiat": 5}, headers=headers)
    assert misspelt.status == 400 and "The fields are: template" in misspelt.json()["error"]["message"]
    wrong_method = api.get(f"{live_server.url}/api/v1/messages", headers=headers)
    assert wrong_method.status == 405 and wrong_method.json()["error"]["field"] == "method"


def test_reloading_the_page_that_shows_a_new_token_posts_nothing_again(setup, page, live_server, team_admin):
    from conversations.models import Integration

    from .conftest import log_in

    log_in(page, live_server, team_admin)
    page.goto(f"{live_server.url}/integrations/new/")
    page.get_by_label("Name").fill("Platform")
    page.get_by_label("Sandbox").check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name="Platform: copy it now")).to_be_visible()
    token = page.locator("#new-token").input_value()

    page.reload()  # the browser does not ask to resend the form: the entry is the integration's page now

    expect(page.get_by_role("heading", name="Platform: copy it now")).to_have_count(0)
    expect(page.locator("body")).not_to_contain_text("already exists")
    integration = Integration.objects.get()
    assert page.url == f"{live_server.url}/integrations/{integration.pk}/"
    assert integration.token_hint == token[:8]  # no second integration, no rotation: the copied token works
