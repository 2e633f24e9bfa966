"""The inbound API as a chatbot platform uses it: bad input answered clearly, replies, history, idempotency."""

from __future__ import annotations

import json

import pytest
from django.db import connection as db

from conversations.models import Call, Conversation, Message

from .conftest import auth

URL = "/api/v1/messages"


def post(client, token, body, **headers):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", **auth(token), **headers)


GOOD = {
    "template": "Support",
    "contact": "+16505551234",
    "message": "Do you deliver?",
    "variables": {"business_name": "Acme"},
}


@pytest.mark.django_db
class TestRefusals:
    @pytest.mark.parametrize(
        ("headers", "words"),
        [
            ({}, "No token was sent."),
            ({"HTTP_AUTHORIZATION": "Basic dXNlcjpwYXNz"}, "not a Bearer token"),
            ({"HTTP_AUTHORIZATION": "Bearer "}, "not a Bearer token"),
            ({"HTTP_AUTHORIZATION": "Bearer sb_not-a-real-token"}, "matches no integration"),
        ],
    )
    def test_a_missing_malformed_or_wrong_token_is_a_json_401_that_says_which(
        self, client, integration_token, headers, words
    ):
        response = client.post("/api/v1/messages", data=json.dumps(GOOD), content_type="application/json", **headers)
        assert response.status_code == 401
        assert response.json()["error"]["field"] == "Authorization"
        assert words in response.json()["error"]["message"]
        assert "sb_not-a-real-token" not in response.content.decode()  # a token is never echoed back

    @pytest.mark.parametrize(
        ("change", "status", "field", "words"),
        [
            ({"template": "Nope"}, 422, "template", "Unknown template 'Nope' for this integration. Allowed: Support"),
            ({"variables": {}}, 422, "variables", "needs a value for {{business_name}}"),
            ({"variables": ["Acme"]}, 400, "variables", "must be an object"),
            ({"message": "   "}, 400, "message", "The customer message is empty"),
            ({"message": None}, 400, "message", "as a string"),
            ({"contact": ""}, 400, "contact", "who the customer is"),
            ({"contact": "x" * 201}, 400, "contact", "at most 200"),
            ({"variables": {"business_name": "Ac\x00me"}}, 400, "variables.business_name", "NUL character"),
            (
                {"variables": {"business_name": "Acme\U000e0049\U000e0047"}},
                422,
                "variables",
                "{{business_name}} holds an invisible tag character (U+E0049)",
            ),
            ({"connection": "Other"}, 422, "connection", "Unknown connection 'Other'"),
            ({"template": "Sup\x00port"}, 400, "template", "NUL character"),
            ({"connection": ["Sandbox"]}, 400, "connection", "must be non-empty text"),
            ({"wait": "soon"}, 400, "wait", "number of seconds"),
            ({"wait": 30.5}, 400, "wait", "0 to 30. For longer, send 0 and read status_url"),  # not cut short silently
            ({"wait": -1}, 400, "wait", "0 to 30"),
        ],
    )
    def test_bad_input_names_the_field_and_creates_nothing(
        self, client, integration_token, change, status, field, words
    ):
        response = post(client, integration_token[1], {**GOOD, **change})

        assert response.status_code == status
        assert response.json()["error"]["field"] == field
        assert words in response.json()["error"]["message"]
        assert not Conversation.objects.exists() and not Call.objects.exists()

    def test_a_body_that_is_not_json(self, client, integration_token):
        response = post(client, integration_token[1], "{not json")
        assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]

    def test_an_oversized_message_is_413(self, client, integration_token, settings):
        settings.MAX_CUSTOMER_MESSAGE_BYTES = 50
        response = post(client, integration_token[1], {**GOOD, "message": "x" * 60})
        assert response.status_code == 413 and "the limit is 50" in response.json()["error"]["message"]


@pytest.mark.django_db
def test_without_wait_it_answers_202_with_a_status_url(client, integration_token):
    response = post(client, integration_token[1], GOOD)

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "queued" and body["status_url"].endswith(f"/api/v1/calls/{body['call_id']}")
    status = client.get(f"/api/v1/calls/{body['call_id']}", **auth(integration_token[1]))
    assert status.json()["status"] == "queued"


@pytest.mark.django_db
def test_another_integration_cannot_read_the_call(client, integration_token):
    from conversations.api.tokens import integration_create

    call_id = post(client, integration_token[1], GOOD).json()["call_id"]
    _, other = integration_create(name="Other")

    assert client.get(f"/api/v1/calls/{call_id}", **auth(other)).status_code == 404


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
class TestWithAWorker:
    def test_it_answers_within_wait_and_continues_the_conversation(self, client, integration_token, celery_worker):
        first = post(client, integration_token[1], {**GOOD, "wait": 10})
        second = post(client, integration_token[1], {**GOOD, "message": "And on Sunday?", "wait": 10})

        assert first.status_code == 200, first.json()
        assert first.json()["reply"] == "Sandbox reply from mistral-small-latest: you said 'Do you deliver?'."
        assert first.json()["usage"]["completion_tokens"] > 0 and first.json()["latency_ms"] is not None
        assert second.json()["conversation_id"] == first.json()["conversation_id"]
        sent = Call.objects.get(pk=second.json()["call_id"]).request["messages"]
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]

    def test_an_idempotency_key_makes_one_call(self, client, integration_token, celery_worker):
        one = post(client, integration_token[1], {**GOOD, "wait": 10}, HTTP_IDEMPOTENCY_KEY="order-42")
        two = post(client, integration_token[1], {**GOOD, "wait": 10}, HTTP_IDEMPOTENCY_KEY="order-42")

        assert one.json()["call_id"] == two.json()["call_id"]
        assert (one.json()["idempotent_replay"], two.json()["idempotent_replay"]) == (False, True)
        assert Call.objects.count() == 1 and Message.objects.filter(role="assistant").count() == 1

    def test_a_provider_failure_is_a_502_with_the_fix(self, client, integration_token, celery_worker):
        integration, token = integration_token
        connection = integration.connections.get()
        connection.set_api_key("wrong-key")
        connection.save()

        response = post(client, token, {**GOOD, "wait": 10})

        assert response.status_code == 502
        assert response.json()["error"]["kind"] == "auth"
        assert "Paste the full key" in response.json()["error"]["fix"]


@pytest.mark.django_db
class TestRepeatsAndOutages:
    def test_the_platforms_message_id_makes_a_repeat_return_the_first_result(self, client, integration_token):
        one = post(client, integration_token[1], {**GOOD, "message_id": "msg-1001"})
        two = post(client, integration_token[1], {**GOOD, "message_id": "msg-1001", "wait": 0})

        assert one.json()["call_id"] == two.json()["call_id"]
        assert (one.json()["idempotent_replay"], two.json()["idempotent_replay"]) == (False, True)
        assert Call.objects.count() == 1

    def test_a_message_id_is_unique_per_integration_not_across_them(self, client, integration_token):
        from conversations.api.tokens import integration_create

        integration, _ = integration_token
        _, other = integration_create(
            name="Other", templates=list(integration.templates.all()), connections=list(integration.connections.all())
        )
        first = post(client, integration_token[1], {**GOOD, "message_id": "msg-7"})
        second = post(client, other, {**GOOD, "message_id": "msg-7"})

        assert first.status_code == second.status_code == 202
        assert first.json()["call_id"] != second.json()["call_id"]

    @pytest.mark.parametrize("how", ["message_id", "Idempotency-Key"])
    def test_a_repeat_with_a_different_body_is_a_422_naming_the_conflict(self, client, integration_token, how):
        extra, headers = ({"message_id": "msg-9"}, {}) if how == "message_id" else ({}, {"HTTP_IDEMPOTENCY_KEY": "k-9"})
        first = post(client, integration_token[1], {**GOOD, **extra}, **headers)
        again = post(client, integration_token[1], {**GOOD, **extra, "message": "Something else"}, **headers)

        assert again.status_code == 422
        assert again.json()["error"]["field"] == how
        assert (
            f"was first used with a different body (call {first.json()['call_id']})" in again.json()["error"]["message"]
        )
        assert Call.objects.count() == 1

    def test_an_empty_idempotency_key_is_refused_not_taken_as_none(self, client, integration_token):
        response = post(client, integration_token[1], GOOD, HTTP_IDEMPOTENCY_KEY="")

        assert response.status_code == 400
        assert response.json()["error"]["field"] == "Idempotency-Key"
        assert "The Idempotency-Key header is empty" in response.json()["error"]["message"]
        assert Call.objects.count() == 0  # nothing queued: a retry cannot double it

    def test_two_idempotency_keys_are_refused_not_joined_into_one(self, client, integration_token):
        # Two headers reach the view joined by a comma, as WSGI servers join repeated headers.
        response = post(client, integration_token[1], GOOD, HTTP_IDEMPOTENCY_KEY="dupA,dupB")

        assert response.status_code == 400
        assert response.json()["error"]["field"] == "Idempotency-Key"
        assert "send one Idempotency-Key per request" in response.json()["error"]["message"]
        assert Call.objects.count() == 0

    def test_an_unknown_field_is_refused_naming_the_known_ones(self, client, integration_token):
        response = post(client, integration_token[1], {**GOOD, "wiat": 5})
        assert response.status_code == 400
        assert response.json()["error"] == {
            "field": "wiat",
            "message": "Unknown field 'wiat'. The fields are: template, contact, message, variables, connection, "
            "wait, message_id.",
            "type": "invalid_request_error",
            "param": "wiat",
            "code": "invalid_request_error",
        }

    def test_with_the_broker_down_the_message_is_accepted_with_202(self, client, integration_token, monkeypatch):
        from kombu.exceptions import OperationalError as BrokerError

        from config.celery import app

        def broker_down(*args, **kwargs):
            raise BrokerError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

        monkeypatch.setattr(app, "send_task", broker_down)
        response = post(client, integration_token[1], {**GOOD, "message_id": "m-1"})

        assert response.status_code == 202
        assert response.json()["status"] == "queued" and response.json()["status_url"].endswith(
            f"/api/v1/calls/{response.json()['call_id']}"
        )
        assert Call.objects.get().status == Call.Status.QUEUED  # committed; the sweeper rings for it

    def test_a_database_blink_after_the_commit_is_still_a_202(self, client, integration_token, monkeypatch):
        from django.db import OperationalError

        from conversations.api import views

        def blink(*args, **kwargs):
            raise OperationalError("terminating connection due to administrator command")

        monkeypatch.setattr(views, "call_outcome", blink)
        response = post(client, integration_token[1], GOOD)

        assert response.status_code == 202
        assert response.json()["call_id"] == Call.objects.get().pk


@pytest.mark.skipif(
    db.vendor != "postgresql",
    reason="concurrent transactions: SQLite's take the write lock up front (IMMEDIATE), so they already queue",
)
@pytest.mark.django_db(transaction=True)
def test_first_messages_arriving_together_make_one_conversation(integration_token, published):
    """The attack run: 20 first messages from one new contact at once made three conversations."""
    from django.test import Client

    from tests.helpers import at_once

    _, token = integration_token
    statuses = []
    at_once(lambda n: statuses.append(post(Client(), token, {**GOOD, "message": f"Part {n}"}).status_code), 8)

    assert statuses == [202] * 8
    conversation = Conversation.objects.get()
    assert sorted(conversation.messages.values_list("customer_message", flat=True)) == [f"Part {n}" for n in range(8)]
    assert Call.objects.filter(conversation=conversation).count() == 8
