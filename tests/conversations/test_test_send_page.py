"""The test-send page and its live result, as staff see them."""

from __future__ import annotations

import pytest
from django.urls import reverse

from conversations import delivery, services
from conversations.models import Call

pytestmark = pytest.mark.django_db


def post_send(client, connection, template, **fields):
    data = {"connection": connection.pk, "template": template.pk, "customer_message": "Hi there", **fields}
    return client.post(reverse("conversations:test_send"), data)


def test_it_needs_a_login(client):
    response = client.get(reverse("conversations:test_send"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_it_shows_one_field_per_template_variable(staff_client, connection, template):
    page = staff_client.get(reverse("conversations:test_send")).content.decode()

    assert 'name="var_business_name"' in page
    assert 'name="var_customer_message"' not in page  # asked for once, as the customer message


def test_picking_another_template_swaps_the_fields(staff_client, connection, template):
    from tests.factories import TemplateFactory

    other = TemplateFactory(system_prompt="Shop {{shop}} in {{city}}")

    fields = staff_client.get(reverse("conversations:variable_fields"), {"template": other.pk}).content.decode()

    assert 'name="var_shop"' in fields and 'name="var_city"' in fields
    assert "business_name" not in fields


def test_sending_queues_a_call_and_shows_it_waiting(staff_client, connection, template):
    response = post_send(staff_client, connection, template, var_business_name="Acme")

    call = Call.objects.get()
    assert call.status == Call.Status.QUEUED
    assert response.status_code == 302 and response["Location"].endswith("#result")  # a phone scrolls to it
    page = staff_client.get(response["Location"]).content.decode()
    assert "Queued" in page and "waiting for a worker to pick it up" in page
    assert reverse("conversations:call_status", args=[call.pk]) in page  # the page polls for the outcome

    Call.objects.filter(pk=call.pk).update(status=Call.Status.RUNNING)
    running = staff_client.get(reverse("conversations:call_status", args=[call.pk])).content.decode()
    assert f"The worker is asking {connection.name} for a reply" in running and "Queued" not in running


def test_the_preview_shows_the_request_before_the_form_is_complete(staff_client, connection, template):
    form = {"connection": connection.pk, "template": template.pk, "customer_message": ""}
    preview = staff_client.post(reverse("conversations:preview"), form).content.decode()

    assert "Still to fill in before sending: business_name, customer message." in preview
    assert "‹business_name›" in preview and "‹customer message›" in preview
    page = staff_client.get(reverse("conversations:test_send")).content.decode()
    assert 'name="var_business_name"' in page and 'aria-required="true"' in page and "needed</span>" in page


def test_a_missing_variable_is_shown_on_the_form_and_nothing_is_queued(staff_client, connection, template):
    response = post_send(staff_client, connection, template)

    assert response.status_code == 200
    assert "needs a value for {{business_name}}" in response.content.decode()
    assert not Call.objects.exists()


def test_an_oversized_message_is_refused_with_the_limit(staff_client, connection, template, settings):
    settings.MAX_CUSTOMER_MESSAGE_BYTES = 100
    response = post_send(staff_client, connection, template, var_business_name="Acme", customer_message="x" * 101)

    assert "101 bytes; the limit is 100 (MAX_CUSTOMER_MESSAGE_BYTES)" in response.content.decode()
    assert not Call.objects.exists()


def test_the_status_shows_the_reply_with_latency_and_tokens(staff_client, connection, template):
    call = services.call_send(
        connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
    )
    delivery.call_execute(call_id=call.pk)
    call.refresh_from_db()

    fragment = staff_client.get(reverse("conversations:call_status", args=[call.pk])).content.decode()

    assert "Succeeded" in fragment
    assert "Sandbox reply from mistral-small-latest: you said &#x27;Hi&#x27;." in fragment
    assert f"{call.latency_ms} ms" in fragment
    assert f"{call.prompt_tokens} + {call.completion_tokens} tokens" in fragment
    assert "hx-trigger" not in fragment  # finished: polling stops


def test_the_status_shows_the_error_cause_and_fix(staff_client, connection, template):
    connection.set_api_key("wrong-key")
    connection.save()
    call = services.call_send(
        connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
    )
    delivery.call_execute(call_id=call.pk)

    fragment = staff_client.get(reverse("conversations:call_status", args=[call.pk])).content.decode()

    assert "Authentication" in fragment and "(HTTP 401)" in fragment and "Unauthorized" in fragment
    assert "Likely cause:</strong> The API key is wrong, revoked or missing." in fragment
    assert "Paste the full key into the connection again" in fragment


def test_model_output_with_html_is_shown_as_text(staff_client, connection, template):
    call = services.call_send(
        connection=connection,
        template=template,
        customer_message="<script>alert(1)</script>",
        variables={"business_name": "Acme"},
    )
    delivery.call_execute(call_id=call.pk)

    fragment = staff_client.get(reverse("conversations:call_status", args=[call.pk])).content.decode()

    assert "<script>alert(1)</script>" not in fragment
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in fragment


def test_continuing_a_conversation_queues_the_next_turn(staff_client, connection, template):
    call = services.call_send(
        connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
    )
    delivery.call_execute(call_id=call.pk)

    response = staff_client.post(
        reverse("conversations:reply", args=[call.conversation_id]), {"customer_message": "And tomorrow?"}
    )

    assert response.status_code == 302
    page = staff_client.get(response["Location"]).content.decode()
    assert "And tomorrow?" in page and page.count('class="bubble user"') == 2
    assert page.count('class="bubble assistant"') == 1  # the first reply; the second is still queued
    assert page.count('<details class="attempt">') == 2


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("a\x00b", "Null characters are not allowed."),
        ("   ", "The customer message is empty. Type the message the customer would send."),
    ],
)
def test_unusable_customer_text_is_refused_clearly(staff_client, connection, template, message, error):
    response = post_send(staff_client, connection, template, var_business_name="Acme", customer_message=message)

    assert error in response.content.decode()
    assert not Call.objects.exists()
