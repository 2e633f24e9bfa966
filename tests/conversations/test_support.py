"""Support staff take over: handovers, opting out, what is not text, bursts, staff replies, the 24-hour window,
the inbox and feedback, as a WhatsApp customer and an API platform meet them."""

from __future__ import annotations

import html
import json
import urllib.request
from datetime import timedelta
from unittest.mock import ANY

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.db import connection as db
from django.urls import reverse
from django.utils import timezone

from conversations import delivery, outbox, prices, whatsapp
from conversations.api.tokens import integration_create
from conversations.models import (
    Call,
    Conversation,
    ConversationEvent,
    Feedback,
    Message,
    Outbound,
    WhatsAppChannel,
    WhatsAppContact,
)
from conversations.whatsapp.views import simulated_payload
from tests.factories import ConnectionFactory, TemplateFactory
from tests.helpers import execute_now

pytestmark = pytest.mark.django_db
WA_ID = "15550104444"


@pytest.fixture
def channel(sandbox, published):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=1)
    TemplateFactory(name="Support", system_prompt="You help {{business_name}}. Write [HANDOVER] to hand over.")
    call_command(
        "add_whatsapp_channel", "Shop", phone_number_id="106540352242922", app_secret="s", access_token="t",
        template="Support", connection="Sandbox", var=["business_name=Acme"], burst_seconds=0,
        graph_base_url=sandbox.base_url.removesuffix("/v1"), stdout=open("/dev/null", "w"),  # noqa: SIM115
    )  # fmt: skip
    return WhatsAppChannel.objects.get()


def say(channel, text, n=[0], kind="text", part=None):  # noqa: B006 - a counter for unique message ids
    n[0] += 1
    payload = simulated_payload(channel, WA_ID, text)
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["id"] = f"wamid.SUPPORT{n[0]}"
    if kind != "text":
        message.pop("text")
        message.update({"type": kind, kind: part or {"id": "media-1"}})
    body = json.dumps(payload).encode()
    return whatsapp.webhook_accept(channel=channel, raw_body=body, signature=whatsapp.sign(channel, body))


def conversation():
    return Conversation.objects.get(contact=f"+{WA_ID}")


def sent_texts():
    return list(Outbound.objects.filter(kind="whatsapp").order_by("id").values_list("text", flat=True))


def events():
    return list(ConversationEvent.objects.order_by("id").values_list("kind", flat=True))


# --- The customer asks for a person, the bot hands over, the provider fails ---------------------------------


@pytest.mark.parametrize(
    "text", ["Can I talk to a HUMAN please?", "Je veux un conseiller", "Quiero un humano", "Mitarbeiter bitte"]
)
def test_asking_for_a_person_makes_no_provider_call_and_waits_for_staff(channel, text):
    say(channel, text)

    assert not Call.objects.exists()
    c = conversation()
    assert (c.state, c.reason) == ("waiting", "asked") and c.waiting_since is not None
    assert sent_texts() == [channel.handover_text]
    assert events() == ["asked"]


@pytest.mark.parametrize("text", ["What about humanity?", "Do you sell agents of change?", "personal question"])
def test_a_keyword_inside_another_word_is_not_a_request(channel, text):
    say(channel, text)
    assert Call.objects.count() == 1 and conversation().state == "bot"


def test_the_bot_hands_over_with_the_channels_marker_which_the_customer_never_reads(channel):
    say(channel, "Please pass me on [HANDOVER]")  # the sandbox repeats what it was told, marker included
    call = execute_now(Call.objects.get().pk)

    assert "[HANDOVER]" not in call.reply_text and call.reply_text.startswith("Sandbox reply")
    c = conversation()
    assert (c.state, c.reason) == ("waiting", "model")
    assert sent_texts() == [outbox.whatsapp_text(call.reply_text)]  # its reply was the notice
    assert "model_handover" in events()


def test_a_provider_that_fails_for_good_sends_the_apology_instead_of_silence(channel):
    channel.connection.model = "sandbox-server-error"
    channel.connection.save()
    say(channel, "Hello?")
    execute_now(Call.objects.get().pk)

    c = conversation()
    assert (c.state, c.reason) == ("waiting", "provider_failure")
    assert sent_texts() == [channel.apology_text]


# --- Opting out, and what is not text ----------------------------------------------------------------------


def test_stop_stops_every_automatic_reply_with_one_confirmation_and_start_resumes(channel):
    say(channel, "STOP")
    say(channel, "stop!")  # again: no second confirmation
    say(channel, "Are you there?")
    say(channel, "agent")  # not even a handover notice

    assert not Call.objects.exists()
    assert sent_texts() == [channel.opted_out_text]
    assert WhatsAppContact.objects.get().opted_out_at is not None
    # What they wrote reaches a person: nothing automatic, but the inbox shows it.
    assert (conversation().state, conversation().reason) == ("waiting", "opted_out")

    say(channel, "Start")
    say(channel, "Now a question")

    assert sent_texts() == [channel.opted_out_text, channel.opted_in_text]
    assert Call.objects.count() == 1 and conversation().state == "bot"
    assert events() == ["opted_out", "wrote_opted_out", "wrote_opted_out", "opted_in"]


def test_a_message_written_after_opting_out_waits_in_the_inbox(channel, staff_client):
    say(channel, "STOP")
    say(channel, "My order 1234 arrived broken, please help")

    inbox = staff_client.get(reverse("conversations:inbox")).content.decode()
    log = staff_client.get(reverse("conversations:list")).content.decode()

    assert "My order 1234 arrived broken" in inbox and "Wrote after opting out" in inbox
    assert "waiting for a person" in log


def test_please_dont_stop_is_not_an_opt_out(channel):
    say(channel, "please don't stop my order")
    assert Call.objects.count() == 1 and not WhatsAppContact.objects.filter(opted_out_at__isnull=False).exists()


@pytest.mark.parametrize("kind", ["image", "audio", "document", "sticker", "location"])
def test_what_is_not_text_gets_the_channels_answer_and_is_shown_as_what_it_is(channel, kind):
    say(channel, "", kind=kind, part={"latitude": 1, "longitude": 2} if kind == "location" else None)

    assert not Call.objects.exists()
    message = Message.objects.get(role="user")
    assert message.media_type == kind and message.customer_message.startswith(f"[{kind}")
    assert sent_texts() == [channel.not_text_reply]


def test_a_reaction_is_kept_but_not_answered(channel):
    say(channel, "", kind="reaction", part={"emoji": "👍", "message_id": "wamid.X"})
    assert Message.objects.get(role="user").media_type == "reaction" and sent_texts() == []


# --- Bursts ------------------------------------------------------------------------------------------------


def test_a_burst_is_answered_by_one_call_carrying_every_message(channel):
    channel.burst_seconds = 2
    channel.save()

    for text in ["Hi", "I ordered a bike", "where is it?"]:
        say(channel, text)

    call = Call.objects.get()
    assert call.message.customer_message == "where is it?" and call.run_after > timezone.now()
    assert call.run_after <= call.queued_at + timedelta(seconds=10)
    execute_now(call.pk)
    call.refresh_from_db()
    said = [m["content"] for m in call.request["messages"] if m["role"] == "user"]
    assert said == ["Hi", "I ordered a bike", "where is it?"]
    assert Message.objects.filter(role="assistant").count() == 1


def test_a_burst_never_waits_more_than_ten_seconds_in_all(channel):
    channel.burst_seconds = 5
    channel.save()
    say(channel, "one")
    began = timezone.now() - timedelta(seconds=8)
    Call.objects.update(queued_at=began, run_after=began + timedelta(seconds=5))  # the burst began 8 s ago

    say(channel, "two")

    call = Call.objects.get()
    assert call.run_after <= call.queued_at + timedelta(seconds=10, milliseconds=1)


def test_a_call_rung_before_its_burst_ends_is_not_made_early(channel, published):
    from conversations import delivery

    channel.burst_seconds = 3
    channel.save()
    say(channel, "one")
    call = Call.objects.get()

    assert delivery.call_execute(call_id=call.pk) is None  # its message came early: not claimed
    call.refresh_from_db()
    assert call.status == "queued" and published[-1][:2] == ("conversations.execute_call", call.pk)


def test_a_call_rung_just_before_its_window_closes_starts_when_it_closes(channel, published):
    from conversations import delivery

    say(channel, "one")
    due = timezone.now() + timedelta(milliseconds=150)
    Call.objects.update(run_after=due)
    rings = len(published)

    call = delivery.call_execute(call_id=Call.objects.get().pk)  # rung early on purpose (queue.RING_EARLY)

    assert call is not None and call.status == "succeeded"  # waited, then answered: no second ring
    assert call.started_at >= due and len([p for p in published[rings:] if p[0] == "conversations.execute_call"]) == 0


# --- Read and typing --------------------------------------------------------------------------------------------


def receipts_for(sandbox, message) -> list[dict]:
    """What the sandbox's Graph API was told about a customer's message, as Meta would have been told."""
    with urllib.request.urlopen(f"{sandbox.base_url.removesuffix('/v1')}/_sandbox/whatsapp/reads") as answer:
        return [r for r in json.load(answer)["data"] if r["message_id"] == message.external_id]


def deliver_receipts():
    for row in Outbound.objects.filter(kind="read", status="queued"):
        outbox.outbound_deliver(outbound_id=row.pk)


def test_a_message_for_the_bot_is_marked_read_with_typing_while_the_answer_is_written(channel, sandbox):
    say(channel, "Do you deliver?")
    message = Message.objects.get(role="user")

    deliver_receipts()

    assert receipts_for(sandbox, message) == [
        {"message_id": message.external_id, "typing": True, "to": channel.phone_number_id, "at": ANY}
    ]
    assert Outbound.objects.get(kind="read").status == "sent"


def test_a_message_with_no_bot_answer_coming_is_marked_read_without_typing(channel, sandbox):
    say(channel, "I want a human")
    deliver_receipts()
    assert [r["typing"] for r in receipts_for(sandbox, Message.objects.get(role="user"))] == [False]


def test_what_arrives_while_a_person_holds_it_is_read_when_they_reply(channel, sandbox, staff_client):
    say(channel, "agent")
    deliver_receipts()
    staff_client.post(reverse("conversations:take_over", args=[conversation().pk]))
    say(channel, "Hello? Anyone there?")
    waiting = Message.objects.filter(role="user").order_by("-id").first()
    deliver_receipts()
    assert receipts_for(sandbox, waiting) == []  # nobody has read it yet

    staff_client.post(reverse("conversations:staff_reply", args=[conversation().pk]), {"text": "Yes, Ana here."})
    deliver_receipts()

    assert [r["typing"] for r in receipts_for(sandbox, waiting)] == [False]


def test_a_read_receipt_too_late_to_matter_is_not_sent(channel, sandbox):
    say(channel, "Hi")
    Outbound.objects.filter(kind="read").update(created_at=timezone.now() - timedelta(minutes=10))
    deliver_receipts()
    row = Outbound.objects.get(kind="read")
    assert (row.status, receipts_for(sandbox, Message.objects.get(role="user"))) == ("failed", [])
    assert "this late" in row.last_error


# --- Staff take over, reply, hand back -----------------------------------------------------------------------


def test_staff_take_over_reply_and_hand_back(channel, staff_client, support_user):
    say(channel, "Hi")
    execute_now(Call.objects.get().pk)
    url = reverse("conversations:detail", args=[conversation().pk])

    taken = staff_client.post(reverse("conversations:take_over", args=[conversation().pk]))
    assert taken.url == f"{url}#reply"  # straight to the reply box, a long scroll away on a phone
    say(channel, "Are you a person?")
    staff_client.post(reverse("conversations:staff_reply", args=[conversation().pk]), {"text": "Yes, I am **Ana**."})
    page = staff_client.get(url).content.decode()

    assert Call.objects.count() == 1  # no provider call while a person holds it
    assert (conversation().state, conversation().assigned_to) == ("human", support_user)
    assert sent_texts()[-1] == "Yes, I am *Ana*."
    assert "agent · staff" in page and "Taken over by agent" in page and "Replied by agent" in page
    assert '<button type="submit" form="hand-back-form"' in page.split('id="reply"')[1]  # beside Send reply

    staff_client.post(reverse("conversations:hand_back", args=[conversation().pk]))
    say(channel, "Thanks, one more question")

    assert conversation().state == "bot" and Call.objects.count() == 2
    execute_now(Call.objects.order_by("-id").first().pk)
    history = [m["role"] for m in Call.objects.order_by("-id").first().request["messages"]]
    assert history[-3:] == ["user", "assistant", "user"]  # the staff reply read as the business's answer
    assert events() == ["taken_over", "staff_reply", "handed_back"]


def test_taking_a_conversation_from_a_colleague_is_knowing_and_their_old_page_cannot_reply_over_it(
    channel, client, support_user, team_admin
):
    say(channel, "agent")  # waits for a person
    take_over = reverse("conversations:take_over", args=[conversation().pk])
    reply = reverse("conversations:staff_reply", args=[conversation().pk])
    client.force_login(support_user)
    client.post(take_over, {"holder": ""})  # the inbox showed nobody holding it
    client.force_login(team_admin)

    # The lead's page still showed it waiting, with nobody: the press is refused and names who has it.
    stale = client.post(take_over, {"holder": ""}, follow=True).content.decode()

    assert "agent took this conversation at" in html.unescape(stale) and "nothing changed" in html.unescape(stale)
    assert conversation().assigned_to == support_user
    assert "Take over from agent" in stale  # the reloaded page offers it knowingly, asking first
    assert 'data-confirm="agent holds this conversation. Take it over from them?"' in stale

    client.post(take_over, {"holder": str(support_user.pk)})  # from the page that showed agent holding it

    assert conversation().assigned_to == team_admin
    assert ConversationEvent.objects.order_by("-id").values_list("note", flat=True)[0] == "from agent"
    client.force_login(support_user)  # agent's page, left open, still has the reply box
    refused = client.post(reply, {"text": "Here is your refund"}, follow=True).content.decode()
    assert "lead holds this conversation since" in html.unescape(refused)
    assert "the reply was not sent" in html.unescape(refused)
    assert not Message.objects.filter(role="staff").exists() and "Here is your refund" not in sent_texts()


def test_a_staff_reply_that_would_read_reversed_is_refused(channel, staff_client):
    say(channel, "agent")
    staff_client.post(reverse("conversations:take_over", args=[conversation().pk]), {"holder": ""})

    page = staff_client.post(
        reverse("conversations:staff_reply", args=[conversation().pk]), {"text": "Refund: \u202e05 EUR"}, follow=True
    ).content.decode()

    assert "a text-direction control (U+202E) at position 9" in html.unescape(page)
    assert not Message.objects.filter(role="staff").exists()


def test_handing_back_is_knowing_too_and_a_reply_that_takes_a_waiting_conversation_is_logged(
    channel, client, support_user, team_admin
):
    say(channel, "agent")
    url = reverse("conversations:detail", args=[conversation().pk])
    hand_back = reverse("conversations:hand_back", args=[conversation().pk])
    client.force_login(support_user)
    client.post(reverse("conversations:staff_reply", args=[conversation().pk]), {"text": "I am here."})
    assert events()[-2:] == ["taken_over", "staff_reply"]  # replying took it, and the log says so
    client.force_login(team_admin)

    page = client.get(url).content.decode()
    stale = client.post(hand_back, {"holder": ""}, follow=True).content.decode()  # a page that showed nobody

    assert "<strong>agent</strong> holds this conversation: only they reply" in page and 'id="staff-reply"' not in page
    assert 'data-confirm="agent holds this conversation. Hand it back to the bot?"' in page
    assert "agent took this conversation at" in html.unescape(stale) and "was not handed back" in stale
    assert conversation().state == "human"
    client.post(hand_back, {"holder": str(support_user.pk)})  # knowingly, from the page that showed agent
    assert conversation().state == "bot" and events()[-1] == "handed_back"
    assert ConversationEvent.objects.order_by("-id").values_list("note", flat=True)[0] == "from agent"


def test_a_channel_text_or_variable_that_hides_something_is_refused_and_a_flag_is_not(channel, staff_client):
    from django.core.exceptions import ValidationError

    channel.handover_text = "Please wait \u202etnega na\u202c for us"
    with pytest.raises(ValidationError, match=r"handover_text.*a text-direction control \(U\+202E\)"):
        channel.full_clean()
    channel.handover_text = "One moment \U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
    channel.variables = {"business_name": "Acme\U000e0049\U000e0047\U000e004e"}  # "IGN", for the model only
    with pytest.raises(ValidationError, match=r"business_name holds an invisible tag character \(U\+E0049\)"):
        channel.full_clean()
    channel.variables = {"business_name": "Acme"}
    channel.full_clean()  # England's flag is tag characters too, seen by everyone


def test_pressing_take_over_or_hand_back_twice_changes_nothing_the_second_time(channel, staff_client):
    say(channel, "agent")
    take_over = reverse("conversations:take_over", args=[conversation().pk])
    hand_back = reverse("conversations:hand_back", args=[conversation().pk])
    staff_client.post(take_over, {"holder": ""})
    staff_client.post(take_over, {"holder": ""})  # a double click
    staff_client.post(hand_back)

    again = staff_client.post(hand_back, follow=True).content.decode()
    late_reply = staff_client.post(
        reverse("conversations:staff_reply", args=[conversation().pk]), {"text": "Still there?"}, follow=True
    ).content.decode()

    assert "The bot already answers this conversation" in again
    assert "The bot answers this conversation (handed back by agent at " in late_reply
    assert "so the reply was not sent. Take it over to reply." in late_reply
    assert events()[-2:] == ["taken_over", "handed_back"] and events().count("taken_over") == 1
    assert not Message.objects.filter(role="staff").exists()


@pytest.mark.django_db(transaction=True)  # the worker waits out the blink between transactions of its own
def test_a_whatsapp_reply_that_arrives_as_the_database_blinks_is_recorded_and_never_asked_again(channel, monkeypatch):
    """Once the provider has answered, nothing but the recording (which waits for the database) may read the
    database: a failed read there left the call running, and the sweeper sent the message again."""
    say(channel, "Hi")
    blink, sent = {"statements": 0}, []

    def failing(execute, sql, params, many, context):
        if blink["statements"]:
            blink["statements"] -= 1
            raise OperationalError("the database system is starting up")
        return execute(sql, params, many, context)

    real_adapter_for = delivery.adapter_for

    class BlinkAsItAnswers:
        def __init__(self, adapter):
            self.adapter = adapter

        def __getattr__(self, name):
            return getattr(self.adapter, name)

        def chat(self, **kwargs):
            sent.append(kwargs["body"])
            reply = self.adapter.chat(**kwargs)
            blink["statements"] = 2
            return reply

    monkeypatch.setattr(delivery, "adapter_for", lambda connection: BlinkAsItAnswers(real_adapter_for(connection)))
    prices.forget()  # the price list is due to be read again too
    with db.execute_wrapper(failing):
        execute_now(Call.objects.get().pk)

    call = Call.objects.get()
    assert (call.status, len(sent)) == ("succeeded", 1) and blink["statements"] == 0
    assert sent_texts()[-1] == call.reply_text  # the reply went to the customer once it was recorded


def test_a_staff_reply_after_the_24_hour_window_is_refused_with_the_reason(channel, staff_client):
    say(channel, "agent")
    Conversation.objects.update(last_customer_at=timezone.now() - timedelta(hours=25))

    response = staff_client.post(
        reverse("conversations:staff_reply", args=[conversation().pk]), {"text": "Sorry for the wait"}, follow=True
    )

    assert "24-hour window closed" in response.content.decode()
    assert not Message.objects.filter(role="staff").exists()


def test_a_staff_reply_is_delivered_through_the_outbox(channel, staff_client, sandbox):
    say(channel, "agent")
    staff_client.post(reverse("conversations:staff_reply", args=[conversation().pk]), {"text": "Hello, Ana here."})
    row = Outbound.objects.filter(message__role="staff").get()

    outbox.outbound_deliver(outbound_id=row.pk)

    row.refresh_from_db()
    assert row.status == "sent" and row.whatsapp_sends.get().message_id.startswith("wamid.")


# --- The API: a conversation held by a person -----------------------------------------------------------------


def test_the_api_answers_human_with_no_provider_call_and_staff_replies_reach_the_callback(
    client, sandbox, staff_client, published
):
    connection = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    template = TemplateFactory(name="Support")
    _, token = integration_create(
        name="Platform", templates=[template], connections=[connection], callback_url="http://127.0.0.1:9/hook"
    )
    body = {"template": "Support", "contact": "+15550001234", "message": "Hi", "variables": {"business_name": "A"}}
    client.post(
        "/api/v1/messages", data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    held = Conversation.objects.get()
    staff_client.post(reverse("conversations:take_over", args=[held.pk]))

    response = client.post(
        "/api/v1/messages",
        data=json.dumps({**body, "message": "Still there?"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )

    assert response.status_code == 200
    assert response.json()["status"] == "human" and response.json()["reply"] is None
    assert Call.objects.count() == 1
    staff_client.post(reverse("conversations:staff_reply", args=[held.pk]), {"text": "A person here."})
    row = Outbound.objects.get(kind="callback", message__isnull=False)
    from conversations.callbacks import callback_body

    sent = json.loads(callback_body(row))
    assert (sent["event"], sent["reply"], sent["sent_by"]) == ("message.staff", "A person here.", "agent")


def test_an_api_conversation_without_a_callback_url_cannot_be_taken_over_so_the_bot_is_not_silenced(
    client, sandbox, staff_client, published
):
    connection = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)
    template = TemplateFactory(name="Support")
    _, token = integration_create(name="Platform", templates=[template], connections=[connection])
    body = {"template": "Support", "contact": "+15550001234", "message": "Hi", "variables": {"business_name": "A"}}
    client.post(
        "/api/v1/messages", data=json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    conversation = Conversation.objects.get()
    url = reverse("conversations:detail", args=[conversation.pk])
    page = html.unescape(staff_client.get(url).content.decode())
    assert "Platform has none, so a person cannot answer here" in page and ">Take over</button>" not in page

    refused = staff_client.post(reverse("conversations:take_over", args=[conversation.pk]), follow=True)

    assert "taking over would only silence the bot" in html.unescape(refused.content.decode())
    conversation.refresh_from_db()
    assert conversation.state == "bot"


# --- The inbox, the count, feedback ---------------------------------------------------------------------------


def test_the_inbox_lists_who_waits_oldest_first_with_why_and_the_nav_counts_them(channel, staff_client, support_user):
    say(channel, "agent please")
    page = staff_client.get(reverse("conversations:inbox")).content.decode()

    assert f"+{WA_ID}" in page and "Asked for a person" in page and "agent please" in page
    assert 'class="nav-count" aria-label="1 waiting"' in page

    staff_client.post(reverse("conversations:take_over", args=[conversation().pk]), {"assign": "1"})

    assert conversation().assigned_to == support_user and "assigned" in events()
    assert 'class="nav-count"' not in staff_client.get(reverse("conversations:inbox")).content.decode()
    mine = staff_client.get(reverse("conversations:inbox"), {"tab": "mine"}).content.decode()
    assert f"+{WA_ID}" in mine


def test_a_long_inbox_shows_the_oldest_and_says_how_many_wait(channel, staff_client, monkeypatch):
    from conversations.support import views

    monkeypatch.setattr(views, "INBOX_ROWS", 2)
    now = timezone.now()
    for n in range(3):
        Conversation.objects.create(
            contact=f"+1555010900{n}", connection=channel.connection, channel=channel, state="waiting",
            reason="asked", waiting_since=now - timedelta(minutes=10 - n),
        )  # fmt: skip

    page = staff_client.get(reverse("conversations:inbox")).content.decode()

    assert "+15550109000" in page and "+15550109001" in page and "+15550109002" not in page
    assert "The 2 oldest of 3" in page


def test_feedback_on_a_reply_is_kept_and_counted(channel, staff_client):
    say(channel, "Hi")
    execute_now(Call.objects.get().pk)
    reply = Message.objects.get(role="assistant")

    staff_client.post(reverse("conversations:feedback", args=[reply.pk]), {"good": "no", "note": "Too long"})
    staff_client.post(reverse("conversations:feedback", args=[reply.pk]), {"good": "yes", "note": ""})  # changed

    feedback = Feedback.objects.get()
    assert feedback.good is True
    overview = staff_client.get(reverse("conversations:overview"))
    assert overview.context["feedback"] == {"up": 1, "down": 0}
    assert "1 good · 0 not good" in overview.content.decode()
    page = staff_client.get(reverse("conversations:detail", args=[reply.conversation_id])).content.decode()
    assert 'value="yes" class="secondary chosen" aria-pressed="true">Good</button>' in page
    assert "Not good, on the reply of " in page and " — Too long</q>" in page  # in words: emoji fonts vary


def test_handing_back_answers_what_the_customer_asked_while_a_person_held_it(channel, staff_client):
    say(channel, "agent")
    staff_client.post(reverse("conversations:take_over", args=[conversation().pk]))
    say(channel, "Hello? Is the red one in stock?")

    response = staff_client.post(reverse("conversations:hand_back", args=[conversation().pk]), follow=True)

    call = Call.objects.get()
    assert call.message.content == "Hello? Is the red one in stock?" and call.status == "queued"
    assert "the bot is answering the customer's open question" in html.unescape(response.content.decode())


def test_handing_back_a_message_whose_calls_failed_answers_it_with_the_next_attempt(sandbox, staff_client, published):
    """The attack run's 500: a second 'attempt 1' for the message broke call_one_row_per_attempt."""
    from conversations import services

    connection = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=1, api_key="wrong-key-0")
    template = TemplateFactory(name="Support")
    integration, _ = integration_create(
        name="Platform", templates=[template], connections=[connection], callback_url="http://127.0.0.1:9/hook"
    )
    call = services.call_send(
        connection=connection, template=template, customer_message="Is the red one in stock?",
        variables={"business_name": "A"}, integration=integration, contact="+15550001234",
    )  # fmt: skip
    assert execute_now(call.pk).status == "failed"
    staff_client.post(reverse("conversations:take_over", args=[call.conversation_id]))
    connection.set_api_key("sb-good-key-123456")
    connection.save()

    response = staff_client.post(reverse("conversations:hand_back", args=[call.conversation_id]), follow=True)

    assert response.status_code == 200
    again = Call.objects.order_by("-id").first()
    assert (again.attempt, again.status) == (2, "queued")
    assert execute_now(again.pk).status == "succeeded"


def test_handing_back_after_the_last_word_was_the_teams_queues_nothing(channel, staff_client):
    say(channel, "agent")
    staff_client.post(reverse("conversations:take_over", args=[conversation().pk]))
    staff_client.post(reverse("conversations:staff_reply", args=[conversation().pk]), {"text": "Here to help."})

    response = staff_client.post(reverse("conversations:hand_back", args=[conversation().pk]), follow=True)

    assert not Call.objects.exists()
    assert "the bot answers the customer's next message" in html.unescape(response.content.decode())
