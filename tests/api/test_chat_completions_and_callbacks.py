"""The drop-in endpoint driven by the official SDKs, callbacks to a real receiver, and the API's documents."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from mistralai.client import Mistral
from openai import AuthenticationError, InternalServerError, OpenAI

from connectors import crypto
from conversations.api.tokens import integration_create
from conversations.models import Call, CallbackAttempt
from tests.factories import ConnectionFactory, TemplateFactory
from tests.helpers import wait_until

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]
REPLY = "Sandbox reply from mistral-small-latest: you said 'Where is my parcel?'."


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": ["x"]}, "model"),
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10**12}, "max_tokens"),  # the attack run's was taken and sent to the provider
        # Empty values are refused as whitespace ones are, not taken as "not sent" (the attack run).
        ({"model": ""}, "model"),
        # Fields that change what the reply is, refused (the re-check found them taken):
        ({"modalities": ["text", "audio"]}, "modalities"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"max_completion_tokens": 10**12}, "max_completion_tokens"),
        ({"max_tokens": 50, "max_completion_tokens": 60}, "max_completion_tokens"),
        ({"user": ""}, "user"),
        ({"messages": [{"role": "robot", "content": "Hi"}]}, "messages[0].role"),
        ({"user": "u" * 300}, "user"),
        ({"messages": [{"role": "user", "content": "a\x00b"}]}, "messages[0].content"),
        # Fields that change the reply, refused rather than dropped (the attack run found them taken silently):
        ({"stream": 1}, "stream"),
        ({"stream_options": "yes"}, "stream_options"),
        ({"stream": True, "stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
        ({"n": 5}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "lookup_order"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        # Fields taken and not sent are still refused where OpenAI refuses them (the attack run sent any type).
        ({"top_p": "str"}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop": {}}, "stop"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"seed": 1.5}, "seed"),
        ({"presence_penalty": [1]}, "presence_penalty"),
        ({"frequency_penalty": 3}, "frequency_penalty"),
        ({"logprobs": "yes"}, "logprobs"),
        ({"logit_bias": {"50256": 500}}, "logit_bias"),
        ({"tools": {}}, "tools"),
        ({"tool_choice": {}}, "tool_choice"),
        ({"tool_choice": 5}, "tool_choice"),
        ({"stream_options": {"a": 1}}, "stream_options"),
        # Every turn is a stored row: more than OpenAI takes would fill the database (the attack run stored 32,000).
        ({"messages": [{"role": "user", "content": "Hi"}] * 2049}, "messages"),
    ],
)
def test_bad_chat_requests_name_the_field(client, integration_token, change, field):
    body = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Hi"}], **change}
    response = client.post(
        "/api/v1/chat/completions",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {integration_token[1]}",
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == field
    assert not Call.objects.exists()


def test_an_empty_x_contact_header_is_refused_naming_it(client, integration_token):
    body = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Hi"}]}
    response = client.post(
        "/api/v1/chat/completions",
        data=json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {integration_token[1]}",
        HTTP_X_CONTACT="",
    )
    assert response.status_code == 400 and response.json()["error"]["field"] == "X-Contact"
    assert not Call.objects.exists()


def test_the_openai_sdk_switches_by_changing_base_url_and_key(live_server, integration_token, celery_worker):
    client = OpenAI(base_url=f"{live_server.url}/api/v1", api_key=integration_token[1], max_retries=0)

    completion = client.chat.completions.create(
        model="mistral-small-latest",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is my parcel?"}],
        user="+16505550000",
    )

    assert completion.choices[0].message.content == REPLY
    assert completion.usage.total_tokens > 0
    call = Call.objects.get()
    assert call.conversation.contact == "+16505550000" and call.conversation.integration == integration_token[0]
    assert call.request["messages"][0] == {"role": "system", "content": "Be brief."}


def test_a_developer_message_is_sent_as_the_system_prompt(live_server, integration_token, celery_worker):
    """OpenAI's newer tools send their instructions as role "developer"; the attack run had them refused."""
    client = OpenAI(base_url=f"{live_server.url}/api/v1", api_key=integration_token[1], max_retries=0)

    completion = client.chat.completions.create(
        model="mistral-small-latest",
        messages=[
            {"role": "developer", "content": "Answer for Acme."},
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Where is my parcel?"},
        ],
    )

    assert completion.choices[0].message.content == REPLY
    sent = Call.objects.get().request["messages"]
    assert sent[0] == {"role": "system", "content": "Answer for Acme.\n\nBe brief."}
    assert [m["role"] for m in sent] == ["system", "user"]


def test_max_completion_tokens_is_relayed_as_max_tokens(live_server, integration_token, celery_worker):
    """OpenAI's newer name for max_tokens; the re-check found it taken and not sent."""
    client = OpenAI(base_url=f"{live_server.url}/api/v1", api_key=integration_token[1], max_retries=0)
    client.chat.completions.create(
        model="mistral-small-latest", messages=[{"role": "user", "content": "Hi"}], max_completion_tokens=42
    )
    assert Call.objects.get().request["max_tokens"] == 42


def test_the_mistral_sdk_works_the_same(live_server, integration_token, celery_worker):
    client = Mistral(api_key=integration_token[1], server_url=f"{live_server.url}/api")

    response = client.chat.complete(
        model="mistral-small-latest", messages=[{"role": "user", "content": "Where is my parcel?"}]
    )

    assert response.choices[0].message.content == REPLY


def test_sdk_errors_are_raised_as_the_sdk_expects(live_server, integration_token, celery_worker):
    wrong = OpenAI(base_url=f"{live_server.url}/api/v1", api_key="sb_wrong", max_retries=0)
    with pytest.raises(AuthenticationError):
        wrong.chat.completions.create(model="x", messages=[{"role": "user", "content": "Hi"}])

    connection = integration_token[0].connections.get()
    connection.set_api_key("wrong-key")
    connection.save()
    client = OpenAI(base_url=f"{live_server.url}/api/v1", api_key=integration_token[1], max_retries=0)
    with pytest.raises(
        InternalServerError, match="connection Sandbox failed: Authentication: Unauthorized.*Paste the full key"
    ):
        client.chat.completions.create(model="mistral-small-latest", messages=[{"role": "user", "content": "Hi"}])


class Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((dict(self.headers), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_reply_is_posted_to_the_callback_signed(client, sandbox, celery_worker):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Receiver.received = []
    connection = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    integration, token = integration_create(
        name="Bot",
        templates=[TemplateFactory(name="Support")],
        connections=[connection],
        callback_url=f"http://127.0.0.1:{server.server_address[1]}/hook",
    )
    try:
        client.post(
            "/api/v1/messages",
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
            data=json.dumps(
                {
                    "template": "Support",
                    "contact": "+16505550100",
                    "message": "Where is my parcel?",
                    "variables": {"business_name": "Acme"},
                }
            ),
        )
        wait_until(lambda: Receiver.received, 20, "the callback")
    finally:
        server.shutdown()

    headers, body = Receiver.received[0]
    secret = crypto.decrypt(integration.callback_secret_encrypted)
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Switchboard-Signature"], expected)
    assert json.loads(body)["reply"] == REPLY and json.loads(body)["event"] == "call.finished"
    wait_until(lambda: CallbackAttempt.objects.filter(http_status=200).exists(), 10, "the attempt to be recorded")


def test_add_integration_prints_a_token_that_works(client, sandbox, capsys):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    TemplateFactory(name="Support")

    call_command(  # with a callback URL, whose signing secret is printed too: the token is still the last line
        "add_integration", "Platform", template=["Support"], connection=["Sandbox"],
        callback_url="http://127.0.0.1:8765/hook",
    )  # fmt: skip

    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert token.startswith("sb_")
    response = client.get("/api/v1/calls/1", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 404  # authenticated: no such call, rather than 401


def test_the_openapi_document_and_docs_page(client, admin_client):
    schema = client.get("/api/schema/").json()
    assert schema["openapi"].startswith("3.1")
    assert set(schema["paths"]) == {
        "/api/v1/messages",
        "/api/v1/calls/{id}",
        "/api/v1/chat/completions",
        "/api/v1/models",
    }
    page = admin_client.get("/api/docs/").content.decode()
    assert 'data-schema-url="/api/schema/"' in page and "swagger-ui-bundle.js" in page


def test_the_reference_pages_example_requests_work_as_they_are(client, sandbox, published, settings):
    """ "Try it out" starts from the example body: it must be accepted, not a body of "string" fields."""
    settings.API_CHAT_WAIT_SECONDS = 0  # accepted and queued is enough here: no worker runs
    schema = client.get("/api/schema/").json()
    connection = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    template = TemplateFactory(
        name="Support bot", system_prompt="You answer for {{business_name}}, open {{opening_hours}}."
    )
    _, token = integration_create(name="Docs", templates=[template], connections=[connection])
    for path in ["/api/v1/messages", "/api/v1/chat/completions"]:
        body = schema["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"]
        assert "string" not in json.dumps(body)
        if "wait" in body:
            body = {**body, "wait": 0}
        answer = client.post(
            path, data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
        )
        assert answer.status_code in (202, 503) and "queued" in answer.content.decode(), answer.content
    assert Call.objects.count() == 2
