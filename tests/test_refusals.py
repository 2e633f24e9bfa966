"""Each class of input the second attack run found, answered with a 4xx that names the field and the fix.

test_hostile_input.py fuzzes every entry point for "never a 500"; these tests pin what a person (or an
integration's developer) is told for each class: out-of-range numbers, names that hide characters,
values of the wrong JSON type, ids the key cannot read, methods a page does not take, headers that are
not ASCII, bodies too large for the WhatsApp webhook.
"""

from __future__ import annotations

import json

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from connectors.forms import ProviderConnectionForm
from connectors.models import ProviderConnection
from conversations.models import Call, Conversation, Integration, PromptTemplate, WhatsAppChannel
from tests.test_hostile_input import GOOD_CHAT, GOOD_MESSAGE, api_post, with_raw

pytestmark = pytest.mark.django_db

RIGHT_TO_LEFT_OVERRIDE = "\u202e"


def _error(response) -> dict:
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    return response.json()["error"]


@pytest.fixture
def admin_client(world):
    client = Client(raise_request_exception=True)
    client.force_login(world["admin"])
    return client


# --- The API ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "field", "words"),
    [
        (True, "variables.business_name", "text (or a number)"),
        (None, "variables.business_name", "text (or a number)"),
        ({"city": "Lyon"}, "variables.business_name", "text (or a number)"),
        (["Acme"], "variables.business_name", "text (or a number)"),
    ],
)
def test_a_variable_that_is_not_text_is_refused_by_name(world, value, field, words):
    body = {**GOOD_MESSAGE, "variables": {"business_name": value}}
    response = api_post(Client(), "/api/v1/messages", world["token"], json.dumps(body).encode())
    assert response.status_code == 400
    error = _error(response)
    assert error["field"] == field and words in error["message"]
    assert not Conversation.objects.filter(integration=world["integration"]).exists()


@pytest.mark.parametrize("name", ["", "business name", "1st", "név{}", "a\u202eb"])
def test_a_variable_name_no_template_can_use_is_refused(world, name):
    body = {**GOOD_MESSAGE, "variables": {name: "Acme"}}
    response = api_post(Client(), "/api/v1/messages", world["token"], json.dumps(body).encode())
    assert response.status_code == 400
    assert "is not a variable name" in _error(response)["message"]


def test_a_number_is_a_variable_s_text(world):
    body = {**GOOD_MESSAGE, "variables": {"business_name": 42}}
    response = api_post(Client(), "/api/v1/messages", world["token"], json.dumps(body).encode())
    assert response.status_code == 202, response.content
    conversation = Conversation.objects.get(integration=world["integration"])
    assert conversation.variables == {"business_name": "42"}


def test_a_huge_number_deep_in_the_body_is_refused_at_its_path(world):
    raw = with_raw(GOOD_CHAT, ["messages", "1", "content"], "9" * 30)
    error = _error(api_post(Client(), "/api/v1/chat/completions", world["token"], raw))
    assert error["field"] == "messages[1].content"
    assert "30 digits" in error["message"]
    raw = with_raw(GOOD_MESSAGE, ["variables", "business_name"], "1e999")
    assert _error(api_post(Client(), "/api/v1/messages", world["token"], raw))["field"] == "variables.business_name"


def test_chat_content_sent_as_text_parts_is_relayed_as_text(world, settings):
    settings.API_CHAT_WAIT_SECONDS = 0.05  # no worker here: the request is accepted and left queued
    body = {
        "model": "Sandbox",
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}]},
        ],
    }
    response = api_post(Client(), "/api/v1/chat/completions", world["token"], json.dumps(body).encode())
    assert response.status_code == 503, response.content  # queued, not answered within 0.05 s
    conversation = Conversation.objects.get(integration=world["integration"])
    assert conversation.system_prompt == "Be brief."
    assert conversation.messages.get(role="user").content == "Hello\nthere"


def test_chat_content_with_an_image_part_says_only_text_is_relayed(world):
    body = {
        **GOOD_CHAT,
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}],
    }
    error = _error(api_post(Client(), "/api/v1/chat/completions", world["token"], json.dumps(body).encode()))
    assert error["field"] == "messages[0].content[0]"
    assert "Only text parts" in error["message"]


@pytest.mark.parametrize(
    ("model", "words"),
    [("m" * 201, "at most 200"), (f"mistral{RIGHT_TO_LEFT_OVERRIDE}-small", "U+202E"), ("a\nb", "U+000A")],
)
def test_a_chat_model_no_connection_could_hold_is_refused(world, model, words):
    body = {**GOOD_CHAT, "model": model}
    response = api_post(Client(), "/api/v1/chat/completions", world["token"], json.dumps(body).encode())
    assert response.status_code == 400
    error = _error(response)
    assert error["field"] == "model" and words in error["message"]
    assert not Call.objects.filter(conversation__integration=world["integration"]).exists()


def test_a_header_that_is_not_ascii_is_read_as_utf_8(world):
    key = "clé-1"
    response = api_post(
        Client(),
        "/api/v1/messages",
        world["token"],
        json.dumps(GOOD_MESSAGE).encode(),
        HTTP_IDEMPOTENCY_KEY=key.encode().decode("latin-1"),  # as the bytes arrive in WSGI's environ
    )
    assert response.status_code == 202, response.content
    again = api_post(
        Client(),
        "/api/v1/messages",
        world["token"],
        json.dumps(GOOD_MESSAGE).encode(),
        HTTP_IDEMPOTENCY_KEY=key.encode().decode("latin-1"),
    )
    assert again.json()["call_id"] == response.json()["call_id"]  # the same key, read the same way


def test_a_content_length_that_is_not_a_number_is_a_400(world):
    response = Client().post(
        "/api/v1/messages",
        data=json.dumps(GOOD_MESSAGE),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {world['token']}",
        CONTENT_LENGTH="12abc",
    )
    assert response.status_code == 400
    assert "Content-Length" in _error(response)["message"]


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_the_api_reference_pages_are_read_only(path, method):
    response = Client(enforce_csrf_checks=True).generic(method, path, b"{}", content_type="application/json")
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD"
    assert _error(response)["message"] == f"{method} is not allowed at {path}; use GET, HEAD."


def test_a_nul_in_the_query_string_names_the_parameter(world):
    response = Client().get("/api/v1/calls/1?wait=%00", HTTP_AUTHORIZATION=f"Bearer {world['token']}")
    assert response.status_code == 400
    assert _error(response)["field"] == "query.wait"
    response = Client().get("/api/v1/calls/%00", HTTP_AUTHORIZATION=f"Bearer {world['token']}")
    assert _error(response)["field"] == "path"


# --- The WhatsApp webhook ---------------------------------------------------------------------------------


def test_a_webhook_body_over_the_limit_is_a_json_413_before_it_is_read(world, settings):
    channel = world["channel"]
    url = reverse("conversations:whatsapp_webhook", args=[channel.pk])
    body = json.dumps({"object": "whatsapp_business_account", "entry": [], "pad": "x" * 4_000_000})
    response = Client().post(url, data=body, content_type="application/json")
    assert response.status_code == 413
    assert "MAX_REQUEST_BODY_BYTES" in response.json()["error"]


def test_a_channel_without_an_app_secret_refuses_deliveries_and_says_why(world):
    channel = world["channel"]
    WhatsAppChannel.objects.filter(pk=channel.pk).update(app_secret_encrypted="")
    url = reverse("conversations:whatsapp_webhook", args=[channel.pk])
    response = Client().post(
        url, data=b'{"object": "whatsapp_business_account", "entry": []}', content_type="application/json"
    )
    assert response.status_code == 403
    assert "has no app secret" in response.json()["error"]


def test_the_admin_will_not_add_a_channel_without_its_secrets(world, admin_client):
    response = admin_client.post(
        reverse("admin:conversations_whatsappchannel_add"),
        {
            "name": "No secrets",
            "phone_number_id": "106540352249999",
            "verify_token": "verify-2",
            "graph_base_url": "https://graph.facebook.com",
            "graph_version": "v23.0",
            "template": world["template"].pk,
            "connection": world["connection"].pk,
            "variables": "{}",
        },
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "app_secret" in errors and "access_token" in errors
    assert not WhatsAppChannel.objects.filter(name="No secrets").exists()


# --- Forms: numbers in range, names people can read ---------------------------------------------------------

CONNECTION = {
    "name": "Checked",
    "provider": "mistral",
    "base_url": "https://api.mistral.ai/v1",
    "api_key": "sk-checked-000000",
    "model": "mistral-small-latest",
    "timeout_seconds": "30",
    "max_attempts": "3",
}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", "0"),
        ("max_tokens", "99999999999"),
        ("temperature", "3"),
        ("temperature", "-0.5"),
        ("timeout_seconds", "0"),
        ("timeout_seconds", "100000"),
        ("max_attempts", "0"),
        ("max_attempts", "1000"),
        ("rate_limit_per_second", "0"),
        ("max_concurrent", "0"),
    ],
)
def test_a_connection_setting_out_of_range_is_refused_with_the_range(field, value):
    form = ProviderConnectionForm(data={**CONNECTION, field: value})
    assert not form.is_valid()
    assert field in form.errors
    message = " ".join(form.errors[field])
    assert "between" in message or "at least" in message or "at most" in message, message


@pytest.mark.parametrize(
    "name",
    [
        f"Mistral{RIGHT_TO_LEFT_OVERRIDE}",
        "Mis\u200btral",
        "Mistral\tEU",
        "Mis\x07tral",
        "   ",
        "Mistral\u00a0EU",
        "Mistral  EU",
        "\u3164",
        "\u2800\u2800",
        "\u200d",
    ],
)
def test_a_name_that_hides_characters_is_refused_everywhere_names_are_given(world, admin_client, name):
    connection = ProviderConnectionForm(data={**CONNECTION, "name": name})
    assert not connection.is_valid() and "name" in connection.errors

    response = admin_client.post(
        reverse("conversations:template_new"),
        {"name": name, "system_prompt": "Be kind.", "user_message": "{{customer_message}}"},
    )
    assert response.status_code == 200 and response.context["form"].errors["name"]
    assert not PromptTemplate.objects.exclude(pk=world["template"].pk).exists()

    response = admin_client.post(
        reverse("conversations:integration_new"),
        {"name": name, "templates": world["template"].pk, "connections": world["connection"].pk},
    )
    assert response.status_code == 200 and response.context["form"].errors["name"]
    assert Integration.objects.count() == 1
    assert ProviderConnection.objects.count() == 1


def test_an_emoji_name_is_a_name():
    assert ProviderConnectionForm(data={**CONNECTION, "name": "Support 👩‍💻 EU"}).is_valid()


def test_ids_past_any_column_in_a_form_are_a_form_error(world, admin_client):
    response = admin_client.post(
        reverse("conversations:integration_new"),
        {"name": "Huge ids", "templates": ["9" * 25, str(2**63)], "connections": str(2**63)},
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "templates" in errors and "connections" in errors


# --- The admin ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile_id", ["abc", "9" * 25, "-1", "1.5"])
def test_every_admin_page_answers_an_id_it_cannot_read_with_not_found(world, admin_client, hostile_id):
    for model in admin.site._registry:
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}"
        for suffix in ("change/", "history/", "delete/", "history/abc/", f"history/{hostile_id}/"):
            path = f"{base}/{hostile_id}/{suffix}"
            response = admin_client.get(path)
            # Django's own pages send you back to the list with "doesn't exist"; history pages are a 404.
            assert response.status_code in (302, 404), (path, response.status_code)


@pytest.mark.parametrize("year", ["0", "10000", "9" * 25, "abc"])
def test_a_date_filter_with_an_impossible_year_is_a_bad_filter_not_a_crash(world, admin_client, year):
    response = admin_client.get(f"/admin/conversations/call/?created_at__year={year}")
    assert response.status_code in (200, 302), response.status_code  # ?e=1: the admin's "bad filter" notice


HOSTILE_ADMIN_FILTERS = [
    "{field}__regex=(",
    "{field}__iregex=[",
    "{field}__regex=a{{99999999}}",
    "{field}__range=1,2",
    "{field}__range=a",
    "{field}__exact=1",
    "{field}__in=",
    "{date}__year=99999999999999999999",
    "{date}__month=99999999999999999999",
    "{date}__day=99999999999999999999",
    "{date}__gte=not-a-date",
    "id__gt=abc",
    "id__range=1",
    "ip_address__exact=1",  # django-axes' lists
]


@pytest.mark.django_db(transaction=True)  # each request commits on its own, as in production
@pytest.mark.parametrize("query", HOSTILE_ADMIN_FILTERS)
def test_every_admin_list_answers_a_malformed_filter_without_a_crash(world, admin_client, query):
    """Any model's admin list, ours or a library's: a lookup the database or a field refuses is not a 500."""
    for model in admin.site._registry:
        fields = [f for f in model._meta.concrete_fields if not f.primary_key]
        text = next((f.name for f in fields if f.get_internal_type() in ("CharField", "TextField")), "id")
        date = next((f.name for f in fields if f.get_internal_type() == "DateTimeField"), "id")
        path = f"/admin/{model._meta.app_label}/{model._meta.model_name}/?" + query.format(field=text, date=date)
        response = admin_client.get(path)
        assert response.status_code in (200, 302, 400), (path, response.status_code)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("selected", ["abc", "1.5", "9" * 30, "-"])
def test_an_admin_action_with_rows_that_are_not_ids_is_refused(world, admin_client, selected):
    for model in admin.site._registry:
        path = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = admin_client.post(path, {"action": "delete_selected", "_selected_action": [selected]})
        assert response.status_code in (200, 302, 400), (path, response.status_code)


@pytest.mark.parametrize(("path", "label"), [("/accounts/login/", "login"), ("/admin/login/", "admin login")])
def test_a_username_longer_than_any_account_is_a_form_error(db, path, label):
    response = Client().post(path, {"username": "u" * 256, "password": "x"})
    assert response.status_code == 200, label
    assert "at most 150 characters" in response.content.decode()
