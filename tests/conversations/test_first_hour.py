"""The stumbles of a new user's first hour (issue 12), each as what the page now says."""

from __future__ import annotations

import html
import json
from decimal import Decimal

import pytest
from django.urls import reverse

from connectors.models import ModelPrice, ProviderConnection
from conversations import delivery, prices, services
from conversations.api.tokens import integration_create
from conversations.models import Call, Conversation
from conversations.whatsapp.views import simulated_payload
from tests.factories import TemplateFactory
from tests.helpers import execute_now

pytestmark = pytest.mark.django_db


def send(connection, template, text="Hi", **kwargs):
    return services.call_send(
        connection=connection, template=template, customer_message=text, variables={"business_name": "Acme"}, **kwargs
    )


def test_the_console_shows_the_messages_outcome_while_its_retries_run(staff_client, connection, template, published):
    call = send(connection, template, overrides={"model": "sandbox-overloaded"})
    delivery.call_execute(call_id=call.pk)  # attempt 1 fails with a 503; attempt 2 is queued

    page = staff_client.get(reverse("conversations:test_send"), {"call": call.pk}).content.decode()

    retry = call.latest_attempt()
    assert retry.attempt == 2
    assert f'id="call-{retry.pk}"' in page and f'hx-get="/calls/{retry.pk}/status/"' in page  # still polling
    assert "Not answered yet: attempt 2 of 3" in page
    assert "Attempt 1: Provider error: Service tier capacity exceeded" in page
    assert "Likely cause" not in page  # no final verdict while a retry is coming


def test_send_again_on_a_later_turn_fills_in_that_turns_message(staff_client, connection, template):
    first = send(connection, template, text="First question")
    later = services.conversation_reply(conversation=first.conversation, customer_message="The later question")

    page = staff_client.get(reverse("conversations:test_send"), {"again": later.pk}).content.decode()

    assert "The later question</textarea>" in page and "First question" not in page


def test_a_conversation_with_a_turn_in_flight_refreshes_itself_as_a_transcript(staff_client, connection, template):
    call = send(connection, template)
    delivery.call_execute(call_id=call.pk)
    services.conversation_reply(conversation=call.conversation, customer_message="And then?")
    url = reverse("conversations:detail", args=[call.conversation_id])

    waiting = staff_client.get(url).content.decode()
    assert 'hx-trigger="every 1s"' in waiting and 'hx-select-oob="#attempts"' in waiting
    assert "Waiting for the worker…" in waiting
    assert "send again" not in waiting  # no console card with its own links inside the transcript

    delivery.call_execute(call_id=call.conversation.calls.get(attempt=1, message__customer_message="And then?").pk)
    done = staff_client.get(url).content.decode()
    assert 'hx-trigger="every 1s"' not in done and done.count('class="badge succeeded"') == 2


def test_checking_a_connection_writes_no_history_and_answers_in_its_row(staff_client, connection):
    before = connection.history.count()

    response = staff_client.post(reverse("connectors:check", args=[connection.pk]), {"where": "list"})

    assert connection.history.count() == before
    html = response.content.decode()
    assert "A one-token chat with" in html
    assert f'<td id="check-{connection.pk}" hx-swap-oob="true">' in html
    listing = staff_client.get(reverse("connectors:list")).content.decode()
    assert f'hx-target="#check-result-{connection.pk}"' in listing and f'id="check-result-{connection.pk}"' in listing


def test_a_failed_check_names_the_kind_once_and_tells_support_staff_who_can_fix_it(
    client, support_user, team_admin, connection
):
    ProviderConnection.objects.filter(pk=connection.pk).update(model="no-such-model")
    url = reverse("connectors:check", args=[connection.pk])
    client.force_login(support_user)
    staff_sees = client.post(url, {"where": "list"}).content.decode()
    client.force_login(team_admin)
    admin_sees = client.post(url, {"where": "list"}).content.decode()

    for page in (staff_sees, admin_sees):
        assert "Invalid model: no-such-model" in page and "Invalid model: Invalid model" not in page
    assert "Only an Admin can change a connection: send them this." in staff_sees
    assert "Only an Admin" not in admin_sees
    listing = client.get(reverse("connectors:list")).content.decode()
    assert "Invalid model: no-such-model" in listing and "Invalid model: Invalid model" not in listing


def test_the_check_button_is_on_the_edit_page_and_a_mistral_url_without_v1_is_flagged(lead_client, connection):
    url = reverse("connectors:edit", args=[connection.pk])
    assert f'hx-post="{reverse("connectors:check", args=[connection.pk])}"' in lead_client.get(url).content.decode()

    data = {
        "name": connection.name,
        "provider": "mistral",
        "base_url": "https://api.mistral.ai",
        "model": connection.model,
        "timeout_seconds": "30",
        "max_attempts": "3",
    }
    page = lead_client.post(url, data, follow=True).content.decode()
    assert "does not end in /v1. Mistral&#x27;s API root is https://api.mistral.ai/v1" in page
    assert ProviderConnection.objects.get().base_url == "https://api.mistral.ai"  # saved, with the warning


def test_whatsapp_and_api_numbers_are_stored_and_found_as_e164(client, staff_client, connection, template):
    from django.core.management import call_command

    from conversations import whatsapp
    from conversations.models import WhatsAppChannel

    call_command(
        "add_whatsapp_channel", "Shop", phone_number_id="1065", app_secret="s", access_token="t",
        template=template.name, connection=connection.name, var=["business_name=Acme"],
        graph_base_url="http://127.0.0.1:9", stdout=open("/dev/null", "w"),  # noqa: SIM115
    )  # fmt: skip
    channel = WhatsAppChannel.objects.get()
    body = json.dumps(simulated_payload(channel, "15550100100", "Hello")).encode()
    client.post(f"/whatsapp/{channel.pk}/webhook/", data=body, content_type="application/json",
                HTTP_X_HUB_SIGNATURE_256=whatsapp.sign(channel, body))  # fmt: skip
    integration, token = integration_create(name="Bot", templates=[template], connections=[connection])
    client.post(
        "/api/v1/messages",
        data=json.dumps({"template": template.name, "contact": "+1 (555) 010-0200", "message": "Hi",
                         "variables": {"business_name": "Acme"}}),
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip

    assert sorted(Conversation.objects.values_list("contact", flat=True)) == ["+15550100100", "+15550100200"]
    for query in ["+1555", "1555", "+1 555 010", "15550100100"]:
        page = staff_client.get(reverse("conversations:list"), {"contact": query}).content.decode()
        assert "+15550100100" in page, query


def contact_sent_both_ways(client, connection, template, contact: str) -> list:
    """The answers of /api/v1/messages and /api/v1/chat/completions to a first message from `contact`."""
    _, token = integration_create(name="Bot", templates=[template], connections=[connection])
    return [
        client.post(path, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
        for path, body in [
            ("/api/v1/messages", {"template": template.name, "contact": contact, "message": "Hi"}),
            ("/api/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], "user": contact}),
        ]
    ]


@pytest.mark.parametrize("written", ["(650) 555-0100", "650 555 0100", "650-555-0100", "650.555.0100"])
def test_an_api_contact_written_as_a_number_without_its_country_code_is_refused(client, connection, template, written):
    for answer in contact_sent_both_ways(client, connection, template, written):
        assert answer.status_code == 400
        assert "without its country code" in answer.content.decode() and "+1 " in answer.content.decode()
    assert not Conversation.objects.exists()


def test_ids_that_are_not_phone_numbers_are_kept_as_they_are(client, connection, template, published):
    _, token = integration_create(name="Bot", templates=[template], connections=[connection])
    for contact in ["123456789", "user-42", "ana@example.com"]:
        body = {"template": template.name, "contact": contact, "message": "Hi", "variables": {"business_name": "A"}}
        client.post("/api/v1/messages", data=json.dumps(body), content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {token}")  # fmt: skip
    assert sorted(Conversation.objects.values_list("contact", flat=True)) == ["123456789", "ana@example.com", "user-42"]


def test_a_chat_completions_conversation_names_its_kind_not_none(staff_client, connection):
    conversation = Conversation.objects.create(contact="api:Bot", connection=connection, template=None)
    page = staff_client.get(reverse("conversations:detail", args=[conversation.pk])).content.decode()
    listing = staff_client.get(reverse("conversations:list")).content.decode()
    assert "chat completions" in page and "None" not in page
    assert "None" not in listing


def test_costs_are_shown_where_promised_and_unpriced_models_say_so(staff_client, connection, template):
    ModelPrice.objects.update_or_create(  # its own row: a transactional test may have flushed the seeded list
        model="mistral-small-latest",
        defaults={"input_per_million": Decimal("0.1"), "output_per_million": Decimal("0.3")},
    )
    prices.forget()
    priced = delivery.call_execute(call_id=send(connection, template).pk)
    unpriced = delivery.call_execute(call_id=send(connection, template, overrides={"model": "open-mistral-nemo"}).pk)
    ModelPrice.objects.filter(model="open-mistral-nemo").delete()

    console = staff_client.get(reverse("conversations:test_send"), {"call": priced.pk}).content.decode()
    assert f"${priced.cost_usd:.6f}" in console
    calls = staff_client.get(reverse("conversations:calls")).content.decode()
    assert "not priced" in calls if unpriced.cost_usd is None else True
    overview = staff_client.get(reverse("conversations:overview"), {"period": "1h"}).content.decode()
    assert "$0.000000" not in overview


def test_an_error_kind_is_not_repeated_before_its_message(staff_client, connection, template):
    call = delivery.call_execute(call_id=send(connection, template, overrides={"model": "mistral-tiny-2099"}).pk)
    assert call.error_message.startswith("Invalid model")

    page = staff_client.get(reverse("conversations:calls")).content.decode()

    assert "Invalid model: mistral-tiny-2099" in page and "Invalid model: Invalid model" not in page


def test_the_overview_counts_customer_messages_and_final_errors(staff_client, connection, template, published):
    connection.max_attempts = 2
    connection.save()
    failing = send(connection, template, overrides={"model": "sandbox-server-error"})
    delivery.call_execute(call_id=failing.pk)
    execute_now(failing.latest_attempt().pk)  # both attempts fail: one message not answered
    delivery.call_execute(call_id=send(connection, template).pk)  # one answered

    response = staff_client.get(reverse("conversations:overview"), {"period": "1h"})

    totals = response.context["totals"]
    assert (totals["messages"], totals["answered"], totals["failed_messages"], totals["total"]) == (2, 1, 1, 3)
    assert response.context["error_rate"] == 50
    assert [c.attempt for c in response.context["last_errors"]] == [2]  # the final failure only, not each retry
    assert 'class="card wide"' in response.content.decode()


def test_templates_for_the_list_exist(staff_client):
    TemplateFactory(name="Other")
    assert staff_client.get(reverse("conversations:templates")).status_code == 200
    assert Call.objects.count() == 0


def test_add_whatsapp_channel_prints_the_webhook_url_meta_needs(settings, connection, template):
    from io import StringIO

    from django.core.management import call_command

    def add(name):
        out = StringIO()
        call_command(
            "add_whatsapp_channel", name, phone_number_id="106540352242922", app_secret="s3cret",
            access_token="t0ken", template=template.name, connection=connection.name, verify_token="vt-123",
            stdout=out,
        )  # fmt: skip
        return out.getvalue()

    settings.PUBLIC_URL = ""
    assert "/webhook/ on this site's public https address (set PUBLIC_URL" in add("Shop")
    settings.PUBLIC_URL = "https://switchboard.example.com"
    printed = add("Shop")
    assert (
        "callback URL to https://switchboard.example.com/whatsapp/" in printed and "verify token to vt-123" in printed
    )
    assert "YOUR-HOST" not in printed


def test_the_verify_token_is_shown_to_admins_only_and_the_api_reference_is_linked(
    client, support_user, team_admin, connection, template
):
    from conversations.models import WhatsAppChannel

    channel = WhatsAppChannel.objects.create(
        name="Shop", phone_number_id="1", verify_token="vt-secret-9", template=template, connection=connection
    )
    pages = [reverse("conversations:whatsapp_channels"), reverse("conversations:whatsapp_channel", args=[channel.pk])]
    client.force_login(support_user)
    for url in pages:
        assert "vt-secret-9" not in client.get(url).content.decode()
    client.force_login(team_admin)
    for url in pages:
        assert "vt-secret-9" in client.get(url).content.decode()
    assert (
        '<a href="/api/docs/">API reference</a>' in client.get(reverse("conversations:integrations")).content.decode()
    )


def test_filters_offer_any_and_counts_read_as_words(staff_client, connection, template):
    calls = staff_client.get(reverse("conversations:calls")).content.decode()
    assert "---------" not in calls and '<option value="" selected>Any</option>' in calls
    sort = calls.split('name="order"')[1].split("</select>")[0]
    assert sort.index("Newest first") < sort.index("Oldest first") and "descending" not in sort  # each order once
    submitted = staff_client.get(reverse("conversations:calls"), {"order": "-queued", "status": "failed"})
    assert "Filters (1 set)" in submitted.content.decode()  # the page's own order, sent with the form, is not one

    delivery.call_execute(call_id=send(connection, template).pk)
    overview = staff_client.get(reverse("conversations:overview")).content.decode()
    assert "1</span> customer message<" in overview and "1</span> provider call (0 retries)" in overview


def test_a_conversation_waiting_for_seconds_says_under_a_minute(channel_for_first_hour, staff_client):
    conversation = channel_for_first_hour
    for url in [reverse("conversations:inbox"), reverse("conversations:detail", args=[conversation.pk])]:
        page = staff_client.get(url).content.decode()
        assert "under a minute" in page and "0\xa0minutes" not in page and "0 minutes" not in page


@pytest.fixture
def channel_for_first_hour(connection, template):
    from django.utils import timezone

    integration, _ = integration_create(name="Bot", templates=[template], connections=[connection])
    return Conversation.objects.create(
        integration=integration,
        contact="+15550100100",
        connection=connection,
        template=template,
        state=Conversation.State.WAITING,
        reason=Conversation.Reason.ASKED,
        waiting_since=timezone.now(),
    )


def test_a_wrong_model_override_is_the_senders_to_fix_and_a_first_visit_starts_from_what_worked(
    staff_client, connection, template, published
):
    ProviderConnection.objects.create(name="Aaa new", base_url=connection.base_url, model="m")  # first by name
    good = send(connection, template)
    execute_now(good.pk)
    page = staff_client.get(reverse("conversations:test_send")).content.decode()
    assert f'<option value="{connection.pk}" selected>' in page  # the connection that answered last

    call = send(connection, template, overrides={"model": "mistral-hugee-latest"})
    call = execute_now(call.pk)
    while call.status == "queued":
        call = execute_now(call.pk)
    result = staff_client.get(reverse("conversations:call_status", args=[call.pk])).content.decode()
    result = html.unescape(result)
    assert "The model override 'mistral-hugee-latest' is not a model this provider offers" in result
    assert "Send again with the model override empty" in result and "Only an Admin" not in result


def test_dates_the_wrong_way_round_are_pointed_out(staff_client):
    for name in ["conversations:calls", "conversations:list"]:
        page = staff_client.get(reverse(name), {"since": "2026-12-05", "until": "2026-11-01"}).content.decode()
        assert "is after “To” (01 Nov 2026), so nothing can match: swap them." in html.unescape(page)


def test_one_number_in_other_digits_is_one_contact_and_invisible_characters_are_refused(
    client, connection, template, published
):
    """The attack run: a full-width digit made another customer, a right-to-left override was stored."""
    _, token = integration_create(name="Bot", templates=[template], connections=[connection])

    def send(contact):
        body = {"template": template.name, "contact": contact, "message": "Hi", "variables": {"business_name": "A"}}
        return client.post("/api/v1/messages", data=json.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token}")  # fmt: skip

    numbers = ["+15558191735", "+１5558191735", "＋１ (555) 819-1735", "+١٥٥٥٨١٩١٧٣٥", "\u2066+1 555 819 1735\u2069"]
    for contact in [*numbers, "１２３４５６７", "1234567"]:  # a phone's copy wraps a number in direction marks
        assert send(contact).status_code == 202
    for contact in ["+1555\u202e8191735", "+1555\u200b8191735", "user\u000742"]:
        refused = send(contact)
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "contact"
        assert "Send the number or id without it." in refused.json()["error"]["message"]
    assert sorted(Conversation.objects.values_list("contact", flat=True).distinct()) == ["+15558191735", "1234567"]


@pytest.mark.parametrize("written", ["+", "+1", "+1 555", "+999999999999999999999", "+0 650 555 0100", "+alice"])
def test_an_api_contact_with_a_plus_that_is_no_phone_number_is_refused(client, connection, template, written):
    """A + promises an E.164 number, which the contact is stored as: what is not one is refused, not kept."""
    for answer in contact_sent_both_ways(client, connection, template, written):
        assert answer.status_code == 400, written
        assert "not a phone number in international form" in answer.json()["error"]["message"]
    assert not Conversation.objects.exists()
