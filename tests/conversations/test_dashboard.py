"""The dashboard's pages through Django's test client: roles, logs, exports, costs, the console's extras."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from connectors.models import ModelPrice
from conversations import delivery, prices, services
from conversations.models import Call
from tests.factories import TemplateFactory

pytestmark = pytest.mark.django_db


def answered(connection, template, text="Hi", contact="+1 650 555 0000", **overrides):
    call = services.call_send(
        connection=connection,
        template=template,
        customer_message=text,
        variables={"business_name": "Acme"},
        contact=contact,
        overrides=overrides,
    )
    return delivery.call_execute(call_id=call.pk)


def test_a_finished_call_stores_its_cost_from_the_price_list(connection, template):
    # Its own row: the seeded price list is gone once a transactional test (a browser test) has flushed the tables.
    ModelPrice.objects.update_or_create(
        model="mistral-small-latest",
        defaults={"input_per_million": Decimal("0.15"), "output_per_million": Decimal("0.60")},
    )
    prices.forget()

    call = answered(connection, template)

    expected = (
        Decimal(call.prompt_tokens) * Decimal("0.15") + Decimal(call.completion_tokens) * Decimal("0.60")
    ) / 10**6
    assert call.cost_usd == expected.quantize(Decimal("0.000001"))
    call.refresh_from_db()
    assert call.cost_usd == expected.quantize(Decimal("0.000001"))


def test_overrides_change_the_request_for_that_conversation_only(connection, template):
    call = answered(connection, template, model="mistral-large-latest", temperature=0.1, max_tokens=5)

    assert (call.request["model"], call.request["temperature"], call.request["max_tokens"]) == (
        "mistral-large-latest",
        0.1,
        5,
    )
    assert answered(connection, template).request["model"] == "mistral-small-latest"


@pytest.mark.parametrize(
    ("url_name", "args"),
    [
        ("connectors:new", []),
        ("connectors:edit", ["pk"]),
        ("conversations:template_new", []),
    ],
)
def test_support_staff_cannot_edit_connections_or_templates(staff_client, connection, template, url_name, args):
    values = {"pk": connection.pk, "tpk": template.pk}
    response = staff_client.get(reverse(url_name, args=[values[a] for a in args]))
    assert response.status_code == 403
    assert "You don't have access to this page" in response.content.decode()


def test_support_staff_read_a_template_and_its_versions_but_cannot_change_it(staff_client, template):
    url = reverse("conversations:template_edit", args=[template.pk])
    page = staff_client.get(url).content.decode()
    assert template.name in page and "<textarea" not in page and "Save and publish" not in page
    assert staff_client.post(url, {"name": "X", "user_message": "{{customer_message}}"}).status_code == 403


def test_support_staff_see_connections_without_keys(staff_client, connection):
    page = staff_client.get(reverse("connectors:list")).content.decode()
    assert "Sandbox" in page and "…4b06" in page
    assert "sb-test-key" not in page
    assert f'href="{reverse("connectors:edit", args=[connection.pk])}"' not in page


def test_an_admin_edits_a_template_and_the_change_is_recorded(lead_client, template):
    url = reverse("conversations:template_edit", args=[template.pk])
    lead_client.post(url, {"name": "Support", "system_prompt": "Be kind.", "user_message": "{{customer_message}}"})
    response = lead_client.post(
        url, {"name": "Support", "system_prompt": "Be kind.\nBe brief.", "user_message": "{{customer_message}}"}
    )

    assert response.status_code == 302
    page = lead_client.get(url).content.decode()
    assert '<td data-label="By">lead</td>' in page
    assert "System prompt +1 −0 lines" in page and "First version" in page
    template.refresh_from_db()
    assert template.system_prompt == "Be kind."  # the second save is a draft until published


def test_the_call_log_filters_and_never_counts_the_table(staff_client, connection, template):
    answered(connection, template, contact="+44 20 7946 0000")
    connection.set_api_key("wrong-key")
    connection.save()
    answered(connection, template, contact="+44 20 7946 0001")

    with CaptureQueriesContext(db) as queries:
        page = staff_client.get(
            reverse("conversations:calls"), {"status": "failed", "contact": "+44 20 7946"}
        ).content.decode()

    assert page.count('<tr class="status-failed">') == 1 and "+44 20 7946 0001" in page
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert not [sql for sql in counts if "conversations_call" in sql]  # the navigation counts the waiting only


def test_the_call_log_pages_without_counting(staff_client, connection, template, settings):
    from conversations import filters

    for n in range(3):
        answered(connection, template, contact=f"c{n}")
    filters.PAGE_SIZE, saved = 2, filters.PAGE_SIZE
    try:
        first = staff_client.get(reverse("conversations:calls")).content.decode()
        second = staff_client.get(reverse("conversations:calls"), {"page": 2}).content.decode()
    finally:
        filters.PAGE_SIZE = saved
    assert "Older →" in first and first.count("<tr class=") == 2
    assert "Older →" not in second and second.count("<tr class=") == 1


def test_exports_stream_the_filtered_rows(staff_client, connection, template):
    answered(connection, template, text="First", contact="alice")
    answered(connection, template, text="Second", contact="bob")

    response = staff_client.get(reverse("conversations:export_jsonl"), {"contact": "bob"})

    assert response.streaming and response["Content-Disposition"].startswith('attachment; filename="switchboard-calls-')
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    assert [(r["contact"], r["customer_message"], r["status"]) for r in rows] == [("bob", "Second", "succeeded")]
    assert "api_key" not in rows[0]


def test_send_again_fills_the_form_with_the_same_inputs(staff_client, connection, template):
    call = answered(connection, template, text="Where is my order?", temperature=0.3)

    page = staff_client.get(reverse("conversations:test_send"), {"again": call.pk}).content.decode()

    assert 'value="Acme"' in page and "Where is my order?</textarea>" in page
    assert 'name="temperature" value="0.3"' in page


def test_the_preview_names_a_missing_variable(staff_client, connection, template):
    response = staff_client.post(
        reverse("conversations:preview"),
        {"connection": connection.pk, "template": template.pk, "customer_message": "Hi"},
    )
    assert "Still to fill in before sending: business_name." in response.content.decode()
    assert "‹business_name›" in response.content.decode()  # where the value goes, in the request body


def test_the_overview_reports_latency_percentiles_and_usage(staff_client, connection, template):
    for n in range(5):
        answered(connection, template, text=f"Question {n}")

    response = staff_client.get(reverse("conversations:overview"), {"period": "1h"})

    latencies = sorted(Call.objects.values_list("latency_ms", flat=True))
    assert response.context["totals"]["total"] == 5
    assert latencies[0] <= response.context["latency"]["p50"] <= latencies[-1]
    assert response.context["usage"][0]["calls"] == 5


def test_templates_are_listed_with_their_placeholders(staff_client):
    TemplateFactory(name="Shop", system_prompt="{{shop}} in {{city}}")
    page = staff_client.get(reverse("conversations:templates")).content.decode()
    assert "<code>{{shop}}</code>" in page and "<code>{{city}}</code>" in page


def test_staff_cannot_type_into_a_real_customers_conversation(staff_client, connection, template):
    from conversations.api.tokens import integration_create

    integration, _ = integration_create(name="Bot", templates=[template], connections=[connection])
    call = services.call_send(
        connection=connection,
        template=template,
        customer_message="Hi",
        variables={"business_name": "Acme"},
        integration=integration,
    )

    page = staff_client.get(reverse("conversations:detail", args=[call.conversation_id])).content.decode()
    response = staff_client.post(reverse("conversations:reply", args=[call.conversation_id]), {"customer_message": "x"})

    assert "Continue the conversation" not in page
    assert response.status_code == 400 and "with a real customer" in response.content.decode()
    assert Call.objects.count() == 1


def test_the_csv_export_neutralises_spreadsheet_formulas(staff_client, connection, template):
    answered(connection, template, text='=HYPERLINK("http://evil.example")', contact="eve")

    response = staff_client.get(reverse("conversations:export_csv"))
    text = b"".join(response.streaming_content).decode()

    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text


def test_the_conversation_list_tells_customers_from_tests(staff_client, connection, template):
    from conversations.api.tokens import integration_create

    answered(connection, template, contact="console tester")
    integration, _ = integration_create(name="Platform", templates=[template], connections=[connection])
    call = services.call_send(
        connection=connection, template=template, customer_message="Where is my parcel?",
        variables={"business_name": "Acme"}, integration=integration, contact="+16505550123",
    )  # fmt: skip
    delivery.call_execute(call_id=call.pk)

    def contacts(source: str) -> list[str]:
        page = staff_client.get(reverse("conversations:list"), {"source": source}).content.decode()
        return [c for c in ("console tester", "+16505550123") if c in page]

    assert contacts("") == ["console tester", "+16505550123"]
    assert contacts("customers") == ["+16505550123"]
    assert contacts("tests") == ["console tester"]
