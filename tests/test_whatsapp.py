"""The WhatsApp channel as Meta drives it: the handshake, signed webhooks, at-least-once delivery, replies out."""

from __future__ import annotations

import html
import json
import urllib.request

import pytest
from django.core.management import call_command
from django.db import connection as db

from conversations import whatsapp
from conversations.models import Call, Conversation, Message, WhatsAppChannel, WhatsAppRefusal, WhatsAppSend
from conversations.whatsapp.formatting import whatsapp_parts
from conversations.whatsapp.views import simulated_payload
from tests.factories import ConnectionFactory, TemplateFactory
from tests.helpers import wait_until

WA_ID = "16505551234"


@pytest.fixture
def channel(sandbox, db):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    TemplateFactory(name="Support")
    call_command(
        "add_whatsapp_channel",
        "Shop",
        phone_number_id="106540352242922",
        app_secret="meta-app-secret",
        access_token="graph-token",
        template="Support",
        connection="Sandbox",
        var=["business_name=Acme"],
        verify_token="verify-me",
        graph_base_url=sandbox.base_url.removesuffix("/v1"),
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )
    return WhatsAppChannel.objects.get()


def deliver(client, channel, payload, signature=None):
    body = json.dumps(payload).encode()
    return client.post(
        f"/whatsapp/{channel.pk}/webhook/",
        data=body,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=signature if signature is not None else whatsapp.sign(channel, body),
    )


def text(channel, body, message_id="wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="):
    payload = simulated_payload(channel, WA_ID, body)
    payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = message_id
    return payload


@pytest.mark.django_db
class TestWebhook:
    def test_the_verification_handshake_echoes_the_challenge(self, client, channel):
        url = f"/whatsapp/{channel.pk}/webhook/"
        ok = client.get(url, {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "verify-me"})
        wrong = client.get(url, {"hub.mode": "subscribe", "hub.challenge": "1158201444", "hub.verify_token": "nope"})

        assert (ok.status_code, ok.content, ok["Content-Type"]) == (200, b"1158201444", "text/plain")
        assert wrong.status_code == 403

    def test_a_handshake_with_the_right_token_but_another_mode_says_it_is_the_mode(self, client, channel):
        url = f"/whatsapp/{channel.pk}/webhook/"
        response = client.get(url, {"hub.mode": "x", "hub.challenge": "1", "hub.verify_token": "verify-me"})

        assert (response.status_code, response["Content-Type"]) == (403, "text/plain")  # its input, never a page
        assert response.content.decode() == "Verification failed: hub.mode is 'x'; Meta's handshake sends 'subscribe'."

    def test_a_wrong_signature_is_refused_and_nothing_is_recorded(self, client, channel):
        response = deliver(client, channel, text(channel, "Hi"), signature="sha256=" + "0" * 64)
        assert response.status_code == 403
        assert not Conversation.objects.exists()

    def test_a_text_message_starts_a_conversation_by_wa_id(self, client, channel):
        response = deliver(client, channel, text(channel, "Does it come in another color?"))

        assert response.status_code == 200
        conversation = Conversation.objects.get()
        assert (conversation.contact, conversation.channel, conversation.variables) == (
            "+" + WA_ID,  # E.164, as numbers from the API are stored
            channel,
            {"business_name": "Acme"},
        )
        assert Call.objects.get().status == Call.Status.QUEUED

    def test_a_repeated_message_id_is_answered_once(self, client, channel):
        deliver(client, channel, text(channel, "Hello"))
        deliver(client, channel, text(channel, "Hello"))  # Meta retries the same delivery

        assert Call.objects.count() == 1 and Message.objects.filter(role="user").count() == 1

    def test_status_updates_are_accepted_and_ignored(self, client, channel):
        payload = text(channel, "x")
        value = payload["entry"][0]["changes"][0]["value"]
        del value["messages"]
        value["statuses"] = [{"id": "wamid.X", "status": "delivered", "timestamp": "1749416383", "recipient_id": WA_ID}]

        assert deliver(client, channel, payload).status_code == 200
        assert not Call.objects.exists()

    @pytest.mark.parametrize(
        ("message", "seen_as"),
        [
            ({"type": "image", "image": {"caption": "Is this broken?", "id": "1"}}, "[image] Is this broken?"),
            (
                {"type": "interactive", "interactive": {"button_reply": {"id": "b1", "title": "Track order"}}},
                "Track order",
            ),
            ({"type": "location", "location": {"latitude": 1.5, "longitude": 2.5}}, "[location 1.5, 2.5]"),
            ({"type": "sticker", "sticker": {"id": "9"}}, "[sticker]"),
        ],
    )
    def test_every_message_type_becomes_text_for_the_model(self, channel, message, seen_as):
        payload = text(channel, "")
        original = payload["entry"][0]["changes"][0]["value"]["messages"][0]
        payload["entry"][0]["changes"][0]["value"]["messages"][0] = {
            "from": WA_ID,
            "id": original["id"],
            "timestamp": original["timestamp"],
            **message,
        }
        assert whatsapp.incoming_messages(payload)[0].text == seen_as


def test_long_replies_are_split_at_whatsapps_limit():
    assert [len(p) for p in whatsapp_parts("x" * 9000)] == [4096, 4096, 808]


def _outbox(sandbox, to):
    with urllib.request.urlopen(f"{sandbox.base_url.removesuffix('/v1')}/_sandbox/whatsapp/outbox?to={to}") as r:
        return json.loads(r.read())["data"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_whole_loop_answers_the_customer_on_whatsapp(client, channel, sandbox, celery_worker, broker_url):
    deliver(client, channel, text(channel, "Does it come in another color?", message_id="wamid.ONE"))
    wait_until(
        lambda: WhatsAppSend.objects.filter(message_id__startswith="wamid.").exists(), 20, "the reply to be sent"
    )
    deliver(client, channel, text(channel, "And in blue?", message_id="wamid.TWO"))
    wait_until(
        lambda: WhatsAppSend.objects.filter(message_id__startswith="wamid.").count() == 2, 20, "the second reply"
    )

    received = [m for m in _outbox(sandbox, WA_ID) if m["context"] in ("wamid.ONE", "wamid.TWO")]
    assert [m["body"] for m in received] == [
        "Sandbox reply from mistral-small-latest: you said 'Does it come in another color?'.",
        "Sandbox reply from mistral-small-latest: you said 'And in blue?'.",
    ]
    assert Conversation.objects.count() == 1  # the second message continued the same conversation
    second = Call.objects.filter(status="succeeded").order_by("-id").first()
    assert [m["role"] for m in second.request["messages"]] == ["system", "user", "assistant", "user"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_revoked_access_token_is_recorded_not_retried(client, channel, celery_worker, broker_url):
    from connectors import crypto

    WhatsAppChannel.objects.filter(pk=channel.pk).update(access_token_encrypted=crypto.encrypt("wrong-token"))
    deliver(client, channel, text(channel, "Hello?", message_id="wamid.THREE"))

    wait_until(lambda: WhatsAppSend.objects.exists(), 20, "the send attempt")
    send = WhatsAppSend.objects.get()
    assert (send.http_status, send.error_code, send.message_id) == (401, 190, "")
    assert "Error validating access token" in send.error


@pytest.mark.django_db
def test_a_message_for_a_number_no_channel_has_is_a_refusal_that_names_it(client, channel, support_user):
    """Meta sends every number of an app to one callback URL: a number without a channel is seen, not dropped."""
    payload = text(channel, "For the other shop")
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "999999999"

    response = deliver(client, channel, payload)

    assert response.status_code == 200 and not Call.objects.exists()
    refusal = channel.refusals.get()
    assert "phone number id 999999999, which no WhatsApp channel here has" in refusal.reason
    assert (refusal.sender, refusal.excerpt) == (WA_ID, '"For the other shop"')
    client.force_login(support_user)
    page = html.unescape(client.get(f"/whatsapp/{channel.pk}/").content.decode())
    assert "Add a channel with phone number id 999999999" in page  # on the channel's page of refusals


def test_a_message_for_another_channels_number_is_answered_by_that_channel(client, channel):
    other = WhatsAppChannel.objects.create(
        name="Second shop", phone_number_id="555000111", template=channel.template, connection=channel.connection,
        variables={"business_name": "Acme Two"}, app_secret_encrypted=channel.app_secret_encrypted,
        access_token_encrypted=channel.access_token_encrypted, verify_token="v2",
    )  # fmt: skip
    payload = text(channel, "For the second shop")
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = "555000111"

    assert deliver(client, channel, payload).status_code == 200  # to the first channel's URL, the app's one

    conversation = Conversation.objects.get()
    assert conversation.channel == other and conversation.messages.get().content == "For the second shop"
    assert not channel.refusals.exists() and not other.refusals.exists()


@pytest.mark.django_db
def test_a_non_ascii_verify_token_is_refused_not_a_crash(client, channel):
    url = f"/whatsapp/{channel.pk}/webhook/"
    assert client.get(url, {"hub.mode": "subscribe", "hub.challenge": "1", "hub.verify_token": "é"}).status_code == 403


@pytest.mark.django_db
class TestRefusals:
    """A malformed message in a correctly signed delivery is refused alone, and its refusal shown to staff."""

    def test_a_bad_message_is_refused_and_its_good_neighbour_answered(self, client, channel, staff_client):
        payload = text(channel, "The good one", message_id="wamid.GOOD")
        messages = payload["entry"][0]["changes"][0]["value"]["messages"]
        messages.insert(0, {**messages[0], "id": "wamid.BAD", "text": {"body": ["not", "a", "string"]}})

        response = deliver(client, channel, payload)

        assert response.status_code == 200
        assert response.json()["refused"] == ["The message's text part is not in Meta's shape (or is empty)."]
        assert Call.objects.get().message.external_id == "wamid.GOOD"
        page = staff_client.get(f"/whatsapp/{channel.pk}/").content.decode()
        assert "wamid.BAD" in page and "The message&#x27;s text part is not in Meta&#x27;s shape (or is empty)." in page

    @pytest.mark.parametrize(
        ("change", "reason"),
        [
            ({"id": "x" * 300}, "The message id is 300 characters; Meta's are under 200."),
            ({"id": "wamid.\x00"}, "The message's id contains a NUL character"),
            ({"from": ["15550001111"]}, "The message's sender (from) is missing or not a WhatsApp id."),
            ({"from": "1555\ud800"}, "The message's sender (from) is missing or not a WhatsApp id."),
            ({"id": None}, "The message has no id as text"),
        ],
    )
    def test_each_kind_of_malformed_message_is_named(self, client, channel, change, reason):
        payload = text(channel, "Hi")
        payload["entry"][0]["changes"][0]["value"]["messages"][0].update(change)
        body = json.dumps(payload).encode()  # surrogates escaped as \\ud800, as a client would send them

        response = client.post(
            f"/whatsapp/{channel.pk}/webhook/",
            data=body,
            content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=whatsapp.sign(channel, body),
        )

        assert response.status_code == 200
        assert response.json()["refused"][0].startswith(reason)
        assert not Call.objects.exists()
        assert WhatsAppRefusal.objects.get().reason.startswith(reason)

    def test_messages_that_is_not_a_list_is_refused_not_a_500(self, client, channel):
        payload = text(channel, "Hi")
        payload["entry"][0]["changes"][0]["value"]["messages"] = {"id": "wamid.X"}
        assert deliver(client, channel, payload).json()["refused"] == ["The change's messages field is not a list."]

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            ('{"object": NaN}', "The delivery has object 'NaN', not WhatsApp's (whatsapp_business_account)."),
            ('{"object": "instagram", "entry": [{"changes": [{"value": {"messages": [{"id": "m1", "from": "1555",'
             ' "type": "text", "text": {"body": "Hi"}}]}}]}]}',
             "The delivery has object 'instagram', not WhatsApp's (whatsapp_business_account)."),
            ('{"object": "whatsapp_business_account"}', "The delivery is not a JSON object with an entry list."),
            ('{"entry": []}', "The delivery has no object, not WhatsApp's (whatsapp_business_account)."),
            ("null", "The delivery is not a JSON object with an entry list."),
            ("[]", "The delivery is not a JSON object with an entry list."),
        ],
    )  # fmt: skip
    def test_a_body_that_is_not_a_delivery_is_refused_whatever_else_it_holds(self, client, channel, body, reason):
        raw = body.encode()
        response = client.post(
            f"/whatsapp/{channel.pk}/webhook/", data=raw, content_type="application/json",
            HTTP_X_HUB_SIGNATURE_256=whatsapp.sign(channel, raw),
        )  # fmt: skip

        assert response.json()["refused"] == [reason]
        assert WhatsAppRefusal.objects.count() == 1 and not Conversation.objects.exists()

    def test_meta_delivering_the_same_body_again_records_the_refusal_once(self, client, channel):
        payload = text(channel, "Hi")
        payload["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = ["bad"]
        deliver(client, channel, payload)
        deliver(client, channel, payload)
        assert WhatsAppRefusal.objects.count() == 1

    def test_a_body_of_nearly_3_mb_is_read(self, client, channel):
        payload = text(channel, "Hi")
        payload["padding"] = "x" * 2_900_000
        assert deliver(client, channel, payload).status_code == 200
        assert Call.objects.count() == 1


@pytest.mark.django_db
def test_a_refusal_keeps_a_long_sender_id(client, channel):
    payload = text(channel, "Hi")
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message.update({"from": "u" + "1" * 63, "text": {"body": ["not text"]}})  # a 64-character scoped user id
    assert deliver(client, channel, payload).status_code == 200
    assert WhatsAppRefusal.objects.get().sender == "u" + "1" * 63


@pytest.mark.django_db
def test_a_markdown_reply_reaches_the_phone_in_whatsapps_marks_and_in_parts(client, channel, sandbox, published):
    from conversations import outbox
    from conversations.models import Outbound
    from tests.helpers import execute_now

    channel.connection.model = "sandbox-markdown"  # a long reply in Markdown, as models write
    channel.connection.save()
    deliver(client, channel, text(channel, "Tell me everything", message_id="wamid.LONG"))
    call = Call.objects.get()
    execute_now(call.pk)  # without waiting out the burst window
    row = Outbound.objects.get(call=call, kind="whatsapp")
    outbox.outbound_deliver(outbound_id=row.pk)

    received = [m["body"] for m in _outbox(sandbox, WA_ID) if m["to"] == WA_ID]
    received = received[-len(whatsapp_parts(row.text)) :]
    assert len(received) >= 2 and all(len(part) <= 4096 for part in received)
    assert "**" not in "".join(received) and "*Opening hours*" in received[0] and "*every day*" in received[0]
    assert "workshop (https://shop.example/workshop)" in received[0] and "Tune-up · 45 €" in received[0]
    assert "```\nhttps://shop.example/orders/1234\n```" in received[0]  # code untouched
    assert all(part.rstrip().endswith(".") for part in received[:-1])  # broken after a paragraph


@pytest.mark.skipif(
    db.vendor != "postgresql",
    reason="concurrent transactions: SQLite serialises them by refusing, PostgreSQL by waiting",
)
@pytest.mark.django_db(transaction=True)
def test_first_messages_arriving_together_make_one_conversation(channel, published):
    """The attack run: five deliveries from a new contact at once made five conversations and five answers."""
    from tests.helpers import at_once

    def deliver_one(n):
        body = json.dumps(text(channel, f"Part {n}", message_id=f"wamid.TOGETHER{n}")).encode()
        whatsapp.webhook_accept(channel=channel, raw_body=body, signature=whatsapp.sign(channel, body))

    at_once(deliver_one, 5)

    assert Conversation.objects.count() == 1
    assert Message.objects.filter(role="user").count() == 5
    assert Call.objects.count() == 1  # one burst: one answer for all five


def test_a_channel_cannot_drop_a_value_its_published_template_uses(channel):
    """Publishing refuses a version a channel lacks a value for; editing the channel is checked the same way."""
    from django.forms.models import model_to_dict

    from conversations.forms import WhatsAppChannelForm

    data = {**model_to_dict(channel), "variables": "{}"}
    data = {key: value for key, value in data.items() if value is not None}
    form = WhatsAppChannelForm(data=data, instance=channel)

    assert not form.is_valid()
    assert "uses {{business_name}}, so every customer message here would be" in form.errors["variables"][0]
    kept = WhatsAppChannelForm(data={**data, "variables": '{"business_name": "Acme"}'}, instance=channel)
    assert kept.is_valid(), kept.errors
