"""Nothing an outsider sends makes a 500: every entry point fuzzed with hostile values.

Hypothesis sends NUL characters, lone UTF-16 surrogates, numbers of hundreds of digits, infinities, deep
nesting, wrong types and oversize strings into every field of every API endpoint, the WhatsApp webhook,
every dashboard page's query string, every dashboard form and the admin. CI runs this on SQLite and on
PostgreSQL, which refuses NUL and surrogates that SQLite stores. Every answer must be below 500, and
under /api/ a JSON error naming the field.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import quote

import pytest
from django.test import Client
from django.urls import NoReverseMatch, get_resolver, reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.models import ProviderConnection
from conversations import whatsapp
from conversations.models import Call, Conversation, WhatsAppRefusal
from conversations.whatsapp.views import simulated_payload
from tests.pages import admin_pages, dashboard_pages

pytestmark = pytest.mark.django_db
FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 40)),
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
    derandomize="FUZZ_EXAMPLES" not in os.environ,
)

# --- Hostile values ---------------------------------------------------------------------------------------

ANY_CHARACTER = st.characters(exclude_categories=())  # surrogates (Cs) and NUL included
HOSTILE_TEXT = st.one_of(
    st.sampled_from(
        [
            "\x00",
            "a\x00b",
            "\ud800",
            "x\udfffy",
            "",
            " ",
            "x" * 70_000,
            "9" * 400,
            "-1",
            "0",
            "99999999999999999999999",
            "1e999",
            "NaN",
            "' OR 1=1 --",
            "{{business_name}}",
            "<script>alert(1)</script>",
            "https://169.254.169.254/",
        ]
    ),
    st.text(ANY_CHARACTER, max_size=40),
)
HOSTILE_JSON_VALUE = st.recursive(
    st.one_of(
        HOSTILE_TEXT,
        st.none(),
        st.booleans(),
        st.integers(min_value=-(10**30), max_value=10**30),
        st.sampled_from([10**300, -(10**300), 2**63, 2**64, -(2**63) - 1]),
        st.floats(allow_nan=True, allow_infinity=True),
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(HOSTILE_TEXT, children, max_size=3),
    max_leaves=6,
)
# Raw JSON text for a value: what json.dumps cannot make (50,000 nested brackets, 1e999, bare NaN).
RAW_JSON_VALUE = st.one_of(
    HOSTILE_JSON_VALUE.map(lambda v: json.dumps(v, allow_nan=True)),
    st.integers(min_value=500, max_value=60_000).map(lambda n: "[" * n + "]" * n),
    st.sampled_from(["9" * 400, "-" + "9" * 5000, "1e999", "-1e999", "NaN", "Infinity", '"\\ud800"', '"\\u0000"']),
)
RAW_BODY = st.one_of(
    st.binary(max_size=200),
    st.integers(min_value=500, max_value=60_000).map(lambda n: b"[" * n),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'"text"',
            b"{",
            b"\xff\xfe",
            b"{}" * 10,
            b'{"a": 1e999}',
            b'{"template": "a\xed\xa0\x80", "contact": "x", "message": "y"}',  # a surrogate as UTF-8 bytes
            '{"model": "x\\u0000", "messages": []}'.encode("utf-16"),  # UTF-16 hides the escape's bytes
            '{"message": "\\ud800"}'.encode("utf-32"),
        ]
    ),
)


@pytest.fixture
def admin_browser(world):
    client = Client(raise_request_exception=True)
    client.force_login(world["admin"])
    return client


def assert_answered_without_500(response, path: str, also: tuple[int, ...] = ()) -> None:
    """Below 500 (or one of `also`); under /api/ JSON, and a 4xx names the field and the problem."""
    if hasattr(response, "streaming_content"):
        b"".join(response.streaming_content)  # an export fails while it streams, not before
    assert response.status_code < 500 or response.status_code in also, (
        path,
        response.status_code,
        response.content[:500],
    )
    if path.startswith("/api/v1/") or (path.startswith("/api/") and response.status_code >= 400):
        assert response["Content-Type"].startswith("application/json"), (path, response["Content-Type"])
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["message"], path
            assert error.get("field") or error.get("type"), path


def encoded(value: str) -> str:
    """A value percent-encoded as a client would put it on the wire, surrogates included (as CESU bytes)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def query(params: dict[str, str]) -> str:
    return "&".join(f"{encoded(k)}={encoded(v)}" for k, v in params.items())


# --- The API ------------------------------------------------------------------------------------------

GOOD_MESSAGE = {
    "template": "Support",
    "contact": "+16505551234",
    "message": "Do you deliver?",
    "variables": {"business_name": "Acme"},
}
GOOD_CHAT = {
    "model": "Sandbox",
    "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
}


def with_raw(body: dict, path: list[str], raw_value: str) -> bytes:
    """`body` as JSON with the value at `path` replaced by raw JSON text (which json.dumps may not produce)."""
    marker = "\u2063MARK\u2063"
    target = body = json.loads(json.dumps(body))
    for key in path[:-1]:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(path[-1])] = marker
    else:
        target[path[-1]] = marker
    return json.dumps(body, ensure_ascii=False).replace(json.dumps(marker, ensure_ascii=False), raw_value).encode()


def api_post(client, path: str, token: str, raw: bytes, **headers):
    return client.post(path, data=raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}", **headers)


MESSAGE_FIELDS = [
    ["template"],
    ["contact"],
    ["message"],
    ["variables"],
    ["variables", "business_name"],
    ["connection"],
    ["wait"],
    ["message_id"],
    ["wiat"],
]
CHAT_FIELDS = [
    ["model"],
    ["messages"],
    ["messages", "0"],
    ["messages", "0", "content"],
    ["messages", "1", "role"],
    ["messages", "1", "content"],
    ["user"],
    ["temperature"],
    ["max_tokens"],
    ["stream"],
    ["tools"],
]


@FUZZ
@given(field=st.sampled_from(MESSAGE_FIELDS), raw=RAW_JSON_VALUE, key=st.one_of(st.none(), HOSTILE_TEXT))
def test_the_messages_endpoint_refuses_any_hostile_field_by_name(world, field, raw, key):
    client = Client()
    headers = {}
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key.encode("utf-8", "surrogatepass").decode("latin-1")
    response = api_post(client, "/api/v1/messages", world["token"], with_raw(GOOD_MESSAGE, field, raw), **headers)
    assert_answered_without_500(response, "/api/v1/messages")


@FUZZ
@given(field=st.sampled_from(CHAT_FIELDS), raw=RAW_JSON_VALUE)
def test_the_chat_completions_endpoint_refuses_any_hostile_field_by_name(world, settings, field, raw):
    settings.API_CHAT_WAIT_SECONDS = 0.05  # no worker here: a valid request is not answered in time
    response = api_post(Client(), "/api/v1/chat/completions", world["token"], with_raw(GOOD_CHAT, field, raw))
    assert_answered_without_500(response, "/api/v1/chat/completions", also=(503,))
    if response.status_code == 503:
        assert response["Retry-After"] and Call.objects.filter(conversation__integration__isnull=False).exists()


@FUZZ
@given(
    path=st.sampled_from(["/api/v1/messages", "/api/v1/chat/completions", "/api/v1/calls/1", "/api/v1/models"]),
    raw=RAW_BODY,
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS"]),
)
def test_any_raw_body_or_method_gets_a_json_answer(world, path, raw, method):
    response = Client().generic(
        method, path, raw, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {world['token']}"
    )
    assert_answered_without_500(response, path, also=(503,))


@FUZZ
@given(segment=HOSTILE_TEXT, token=HOSTILE_TEXT)
def test_any_call_id_or_token_gets_a_json_answer(world, segment, token):
    path = f"/api/v1/calls/{encoded(segment)}"
    auth = f"Bearer {token}".encode("utf-8", "surrogatepass").decode("latin-1")
    assert_answered_without_500(Client().get(path, HTTP_AUTHORIZATION=auth), "/api/v1/calls/")


def test_the_named_examples_of_the_attack_run(world):
    client, token = Client(), world["token"]
    examples = [
        ("/api/v1/messages", with_raw(GOOD_MESSAGE, ["wait"], "9" * 300), "wait"),
        ("/api/v1/messages", b"[" * 50_000, "body"),
        ("/api/v1/messages", with_raw(GOOD_MESSAGE, ["contact"], '"\\ud800"'), "contact"),
        ("/api/v1/messages", with_raw(GOOD_MESSAGE, ["template"], '"Sup\\ud800port"'), "template"),
        ("/api/v1/messages", with_raw(GOOD_MESSAGE, ["connection"], '"\\udfff"'), "connection"),
        (
            "/api/v1/messages",
            with_raw(GOOD_MESSAGE, ["variables", "business_name"], '"\\ud800"'),
            "variables.business_name",
        ),
        ("/api/v1/chat/completions", with_raw(GOOD_CHAT, ["model"], '"a\\u0000b"'), "model"),
        ("/api/v1/chat/completions", with_raw(GOOD_CHAT, ["model"], '"\\ud800"'), "model"),
        ("/api/v1/chat/completions", with_raw({**GOOD_CHAT, "user": "x"}, ["user"], '"\\u0000"'), "user"),
        (
            "/api/v1/chat/completions",
            with_raw(GOOD_CHAT, ["messages", "0", "content"], '"\\ud800"'),
            "messages[0].content",
        ),
    ]
    for path, raw, field in examples:
        response = api_post(client, path, token, raw)
        assert response.status_code == 400, (path, field, response.content)
        assert response.json()["error"]["field"] == field
    assert not Call.objects.filter(conversation__integration__isnull=False).exists()


def test_text_that_is_not_utf_8_is_refused_whatever_its_encoding(world):
    surrogate_bytes = b'{"template": "Support", "contact": "a\xed\xa0\x80", "message": "Hi"}'
    utf16 = json.dumps({**GOOD_CHAT, "model": "x\u0000"}).encode("utf-16")
    for path, raw in [("/api/v1/messages", surrogate_bytes), ("/api/v1/chat/completions", utf16)]:
        response = api_post(Client(), path, world["token"], raw)
        assert response.status_code == 400, response.content
        assert "not UTF-8 text" in response.json()["error"]["message"]


def test_a_10_mb_body_is_a_json_413_under_the_api(world):
    for path in ["/api/v1/messages", "/api/v1/chat/completions"]:
        response = api_post(Client(), path, world["token"], b'{"message": "' + b"x" * 10_000_000 + b'"}')
        assert response.status_code == 413 and response["Content-Type"] == "application/json"
        error = response.json()["error"]
        assert "over" in error["message"] and (error["type"], error["param"]) == ("invalid_request_error", "body")


def test_a_get_on_a_post_endpoint_is_a_json_405(world):
    response = Client().get("/api/v1/messages", HTTP_AUTHORIZATION=f"Bearer {world['token']}")
    assert (response.status_code, response["Allow"]) == (405, "POST")
    assert response.json()["error"] == {
        "field": "method",
        "message": "GET is not allowed at /api/v1/messages; use POST.",
        "type": "invalid_request_error",
        "param": "method",
        "code": "invalid_request_error",
    }


# --- The WhatsApp webhook -------------------------------------------------------------------------------

MESSAGE_PARTS = [["id"], ["from"], ["type"], ["text"], ["text", "body"], ["timestamp"], ["context"]]


@FUZZ
@given(part=st.sampled_from(MESSAGE_PARTS), raw=RAW_JSON_VALUE.filter(lambda r: not r.startswith("[" * 500)))
def test_one_hostile_message_never_blocks_its_neighbour(world, part, raw):
    channel = world["channel"]
    payload = simulated_payload(channel, "16505551234", "The good one")
    messages = payload["entry"][0]["changes"][0]["value"]["messages"]
    good_id = messages[0]["id"]
    messages.insert(0, {**messages[0], "id": good_id + "-bad"})
    raw_body = with_raw(payload, ["entry", "0", "changes", "0", "value", "messages", "0", *part], raw)

    response = Client().post(
        f"/whatsapp/{channel.pk}/webhook/",
        data=raw_body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=whatsapp.sign(channel, raw_body),
    )

    assert response.status_code == 200, response.content[:300]
    assert Call.objects.filter(message__external_id=good_id).exists()  # the neighbour was answered
    bad_taken = Call.objects.filter(message__external_id__startswith=good_id + "-bad").exists()
    assert bad_taken or WhatsAppRefusal.objects.filter(channel=channel).exists() or response.json()["refused"] == []


# --- The dashboard and the admin ------------------------------------------------------------------------

FILTER_KEYS = [
    "page",
    "connection",
    "template",
    "status",
    "error_kind",
    "since",
    "until",
    "contact",
    "q",
    "order",
    "period",
    "call",
    "again",
    "to",
]


@FUZZ
@given(data=st.data())
def test_any_query_string_on_any_page_is_answered(world, admin_browser, data):
    path = data.draw(st.sampled_from(dashboard_pages(world)))
    params = data.draw(st.dictionaries(st.sampled_from(FILTER_KEYS) | HOSTILE_TEXT, HOSTILE_TEXT, max_size=4))
    response = admin_browser.get(path, QUERY_STRING=query(params))
    assert_answered_without_500(response, path)


def test_a_page_number_past_bigint_names_the_page(world, admin_browser):
    for path in [reverse("conversations:calls"), reverse("conversations:list")]:
        response = admin_browser.get(path, {"page": "9" * 30})
        assert response.status_code == 400
        assert "page must be a whole number from 1 to 100,000" in response.content.decode()


def dashboard_forms(world) -> list[tuple[str, list[str]]]:
    connection, template, conversation = world["connection"], world["template"], world["conversation"]
    integration = world["integration"]
    integration_fields = ["name", "templates", "connections", "default_connection", "callback_url"]
    console = ["connection", "template", "customer_message", "model", "temperature", "max_tokens", "var_business_name"]
    connection_fields = [
        "name",
        "provider",
        "base_url",
        "api_key",
        "model",
        "max_tokens",
        "temperature",
        "timeout_seconds",
        "max_attempts",
        "rate_limit_per_second",
        "max_concurrent",
    ]
    return [
        (reverse("conversations:test_send"), console),
        (reverse("conversations:preview"), console),
        (reverse("conversations:reply", args=[conversation.pk]), ["customer_message"]),
        (reverse("conversations:template_new"), ["name", "system_prompt", "user_message"]),
        (
            reverse("conversations:template_edit", args=[template.pk]),
            ["name", "system_prompt", "user_message", "publish"],
        ),
        (reverse("conversations:template_preview"), ["template", "system_prompt", "user_message"]),
        (reverse("conversations:template_publish", args=[template.pk, 1]), []),
        (reverse("conversations:template_requirement", args=[template.pk]), ["test_set"]),
        (reverse("conversations:testrun_new", args=[world["test_set"].pk]), ["connection", "version"]),
        (
            reverse("conversations:case_from_reply", args=[world["reply"].pk]),
            ["test_set", "expect_contains", "expect_not_contains", "max_chars", "no_markdown"],
        ),
        (reverse("connectors:new"), connection_fields),
        (reverse("connectors:edit", args=[connection.pk]), connection_fields),
        (reverse("connectors:check", args=[connection.pk]), []),
        (reverse("conversations:take_over", args=[conversation.pk]), ["assign"]),
        (reverse("conversations:hand_back", args=[conversation.pk]), []),
        (reverse("conversations:staff_reply", args=[conversation.pk]), ["text"]),
        (reverse("conversations:feedback", args=[world["reply"].pk]), ["good", "note"]),
        (reverse("conversations:integration_new"), integration_fields),
        (reverse("conversations:integration_edit", args=[integration.pk]), integration_fields),
        (reverse("conversations:integration_rotate_token", args=[integration.pk]), []),
        (reverse("conversations:integration_signing_secret", args=[integration.pk]), []),
        (reverse("conversations:integration_enabled", args=[integration.pk]), ["enabled"]),
        (reverse("conversations:whatsapp_simulator", args=[world["channel"].pk]), ["text"]),
    ]


def valid_form(world) -> dict[str, str]:
    return {
        "connection": str(world["connection"].pk),
        "template": str(world["template"].pk),
        "customer_message": "Hi",
        "var_business_name": "Acme",
        "name": "Fuzzed",
        "system_prompt": "Be {{business_name}}.",
        "user_message": "{{customer_message}}",
        "provider": "mistral",
        "base_url": "https://api.mistral.ai/v1",
        "api_key": "sk-fuzzed-key-000000",
        "model": "mistral-small-latest",
        "timeout_seconds": "30",
        "max_attempts": "3",
        "text": "Hello",
        "templates": str(world["template"].pk),
        "connections": str(world["connection"].pk),
        "callback_url": "https://chatbot.example.com/hook",
        "phone_number_id": "106540352249999",
        "verify_token": "verify-fuzzed",
        "graph_base_url": "https://graph.facebook.com",
        "graph_version": "v23.0",
        "input_per_million": "0.1",
        "output_per_million": "0.3",
    }


@FUZZ
@given(data=st.data())
def test_any_form_post_is_answered(world, admin_browser, data):
    path, fields = data.draw(st.sampled_from(dashboard_forms(world)))
    form = valid_form(world)
    for name in data.draw(st.lists(st.sampled_from(fields or ["x"]), max_size=3, unique=True)):
        form[name] = data.draw(HOSTILE_TEXT)
    response = admin_browser.post(path, data=query(form), content_type="application/x-www-form-urlencoded")
    assert_answered_without_500(response, path)


@pytest.fixture
def every_admin_page(world):
    return admin_pages()  # once: the examples below add rows, and the list must not change under hypothesis


@FUZZ
@given(data=st.data())
def test_any_admin_query_or_form_is_answered(world, admin_browser, every_admin_page, data):
    path = data.draw(st.sampled_from(every_admin_page))
    params = data.draw(
        st.dictionaries(
            st.sampled_from(["q", "o", "p", "e", "id__exact", "status__exact", "_changelist_filters"]) | HOSTILE_TEXT,
            HOSTILE_TEXT,
            max_size=3,
        )
    )
    response = admin_browser.get(path, QUERY_STRING=query(params))
    assert_answered_without_500(response, path)
    if path.endswith("/add/"):
        form = {**valid_form(world), **{k: v for k, v in params.items()}}
        form["variables"] = data.draw(RAW_JSON_VALUE.filter(lambda r: len(r) < 2000))
        response = admin_browser.post(path, data=query(form), content_type="application/x-www-form-urlencoded")
        assert_answered_without_500(response, path)


def test_every_page_and_endpoint_is_fuzzed_here(world):
    """A new URL must join the lists above: this test names any that has not."""
    fuzzed = {p.split("?")[0] for p in dashboard_pages(world)} | {p for p, _ in dashboard_forms(world)}
    webhook = f"/whatsapp/{world['channel'].pk}/webhook/"
    fuzzed |= {"/api/v1/messages", "/api/v1/chat/completions", "/api/v1/calls/1", "/api/v1/models", webhook}
    missing = []
    for namespace in ["conversations", "connectors", "api"]:
        _, resolver = get_resolver().namespace_dict[namespace]
        for name in {n for n in resolver.reverse_dict if isinstance(n, str)}:
            for args in ([], [1]):
                try:
                    path = reverse(f"{namespace}:{name}", args=args)
                except NoReverseMatch:
                    continue
                if not any(_same_route(path, f) for f in fuzzed):
                    missing.append(f"{namespace}:{name}")
    assert missing == [], f"Pages and endpoints not fuzzed by this file: {missing}"


def _same_route(path: str, fuzzed: str) -> bool:
    return re.sub(r"/\d+/", "/N/", path.rstrip("/") + "/") == re.sub(r"/\d+/", "/N/", fuzzed.rstrip("/") + "/")


def test_the_api_and_admin_still_work_for_good_input(world, admin_browser):
    """The fuzzing above must not pass by refusing everything."""
    response = api_post(Client(), "/api/v1/messages", world["token"], json.dumps(GOOD_MESSAGE).encode())
    assert response.status_code == 202
    assert admin_browser.get(reverse("conversations:calls"), {"page": "1"}).status_code == 200
    assert ProviderConnection.objects.filter(name="Sandbox").exists()
    assert Conversation.objects.filter(integration__isnull=False).exists()
