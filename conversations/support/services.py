"""Who answers a conversation, and what people of the team do in it.

Guarantees, and how they are kept:
- While a conversation is not the bot's (waiting for a person, or with one), no provider call is made for
  its customer's messages: every way in (WhatsApp, the API) asks `bot_answers` first.
- Every change of hands is one ConversationEvent row, with who and when, written in the same transaction
  as the change itself; so is every staff reply.
- Every text Switchboard sends to a customer (a staff reply, a handover notice, an apology, an opt-out
  confirmation, the answer to a picture) is a Message in the transcript and an Outbound row, so the
  durable outbox delivers it as it delivers the bot's replies; none depends on a broker message alone.
- WhatsApp takes free-form messages only within 24 hours of the customer's last one: a staff reply after
  that is refused with the reason (Meta would answer 131047), never sent to fail.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from config.names import hidden_in_text

from ..models import Call, Conversation, ConversationEvent, Feedback, Message, Outbound

Kind = ConversationEvent.Kind


class SupportRefused(ValueError):
    """An action staff cannot take now; the message says why and what to do instead."""


def bot_answers(conversation: Conversation) -> bool:
    return conversation.state == Conversation.State.BOT


def conversation_hand_over(
    *, conversation: Conversation, reason: str, event: str, note: str = "", notice: str = ""
) -> None:
    """The conversation waits for a person (the inbox shows it, oldest first); `notice` tells the customer."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        if locked.state == Conversation.State.BOT:
            locked.state, locked.reason, locked.waiting_since = Conversation.State.WAITING, reason, timezone.now()
            locked.save(update_fields=["state", "reason", "waiting_since", "updated_at"])
        ConversationEvent.objects.create(conversation=locked, kind=event, note=note[:2000])
        if notice:
            automatic_text(conversation=locked, text=notice)
    conversation.refresh_from_db()


def unreachable_reason(conversation: Conversation) -> str | None:
    """Why a person could not reply to this customer, or None: an integration without a callback URL has no
    way to take a staff reply to its platform, so taking over would only silence the bot."""
    if conversation.integration_id and not conversation.integration.callback_url:
        return (
            f"Staff replies reach an API customer through the integration's callback URL, and "
            f"{conversation.integration.name} has none, so a person cannot answer here and taking over would only "
            "silence the bot. An Admin can set a callback URL on the integration's page."
        )
    return None


def conversation_take_over(
    *, conversation: Conversation, by, seen_holder_id: int | None, assigned: bool = False
) -> None:
    """A person holds the conversation: the bot stays silent until they hand it back.

    `seen_holder_id`: who held it on the page the person acted from (None: nobody). Taking a conversation
    from a colleague is allowed, but only knowingly: when someone else took it since that page was shown
    (two people pressing at once, or a page left open), this is refused and names them, instead of the
    second press silently winning. Taking one already held is a no-op (a double click)."""
    unreachable = unreachable_reason(conversation)
    if unreachable:
        raise SupportRefused(unreachable)
    with transaction.atomic():
        locked = (
            Conversation.objects.select_for_update(of=("self",)).select_related("assigned_to").get(pk=conversation.pk)
        )
        held = locked.state == Conversation.State.HUMAN and locked.assigned_to_id is not None
        if held and locked.assigned_to_id == by.pk:
            conversation.refresh_from_db()
            return
        if held and locked.assigned_to_id != seen_holder_id:
            raise SupportRefused(
                f"{locked.assigned_to} took this conversation{_at(' at', locked)} after your page was shown, so "
                "nothing changed. Reload it to see what they did; take it over from them there if you still mean to."
            )
        if locked.state == Conversation.State.BOT:
            locked.reason, locked.waiting_since = Conversation.Reason.STAFF, timezone.now()
        taken_from = locked.assigned_to if held else None
        locked.state, locked.assigned_to = Conversation.State.HUMAN, by
        locked.save(update_fields=["state", "reason", "waiting_since", "assigned_to", "updated_at"])
        kind = Kind.ASSIGNED if assigned else Kind.TAKEN_OVER
        note = f"from {taken_from}" if taken_from else ""
        ConversationEvent.objects.create(conversation=locked, kind=kind, by=by, note=note)
    conversation.refresh_from_db()


def _handed_back(conversation: Conversation) -> str:
    """ " (handed back by Ana at 14:02)", from the conversation's last hand-back; "" if it never had one."""
    last = conversation.events.filter(kind=Kind.HANDED_BACK).select_related("by").order_by("-id").first()
    if last is None:
        return ""
    return f" (handed back{f' by {last.by}' if last.by else ''} at {timezone.localtime(last.created_at):%H:%M})"


def _at(word: str, conversation: Conversation) -> str:
    """ " at 14:02": when the conversation's holder took it (or first replied, taking it), from its events."""
    taken = (
        conversation.events.filter(
            kind__in=[Kind.TAKEN_OVER, Kind.ASSIGNED, Kind.STAFF_REPLY], by_id=conversation.assigned_to_id
        )
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    return f"{word} {timezone.localtime(taken):%H:%M}" if taken else ""


def conversation_hand_back(*, conversation: Conversation, by, seen_holder_id: int | None) -> Message | None:
    """The bot answers the customer again. If the customer wrote after the last answer (a question left
    open while a person held the conversation), the bot answers it now; that message is returned.

    `seen_holder_id` as for a take-over: handing back a colleague's conversation is allowed knowingly, never
    from a page that showed someone else (or nobody) holding it."""
    from ..models import WhatsAppContact
    from ..services import call_queue

    if conversation.is_test:
        raise SupportRefused("A test conversation has no customer: the bot answers it, and nobody hands it back.")
    with transaction.atomic():
        locked = (
            Conversation.objects.select_for_update(of=("self",)).select_related("assigned_to").get(pk=conversation.pk)
        )
        if locked.state == Conversation.State.BOT:  # a second press, or a page left open: nothing to hand back
            raise SupportRefused(f"The bot already answers this conversation{_handed_back(locked)}.")
        if locked.state == Conversation.State.HUMAN and locked.assigned_to_id not in (seen_holder_id, by.pk):
            raise SupportRefused(
                f"{locked.assigned_to} took this conversation{_at(' at', locked)} after your page was shown, so it "
                "was not handed back. Reload it to see what they did; hand it back from there if you still mean to."
            )
        holder = locked.assigned_to if locked.state == Conversation.State.HUMAN else None
        locked.state, locked.reason, locked.waiting_since, locked.assigned_to = Conversation.State.BOT, "", None, None
        locked.save(update_fields=["state", "reason", "waiting_since", "assigned_to", "updated_at"])
        note = f"from {holder}" if holder is not None and holder.pk != by.pk else ""
        ConversationEvent.objects.create(conversation=locked, kind=Kind.HANDED_BACK, by=by, note=note)
        last = locked.messages.order_by("-id").first()
        opted_out = WhatsAppContact.objects.filter(
            channel_id=locked.channel_id, contact=locked.contact, opted_out_at__isnull=False
        ).exists()
        open_question = (
            last is not None
            and last.role == Message.Role.USER
            and not last.media_type
            and not last.calls.filter(
                status__in=[Call.Status.QUEUED, Call.Status.RUNNING, Call.Status.SUCCEEDED]
            ).exists()
            and not opted_out
            and (not locked.channel_id or locked.window_open)
        )
        if open_question:
            # Answered afresh, after the attempts that failed for it: the next attempt number, not a second 1.
            tried = last.calls.aggregate(n=Max("attempt"))["n"] or 0
            call_queue(conversation=locked, message=last, attempt=tried + 1)
    conversation.refresh_from_db()
    return last if open_question else None


def staff_reply(*, conversation: Conversation, by, text: str) -> Message:
    """A person's reply to the customer: in the transcript with who wrote it, delivered by the outbox
    (to the WhatsApp customer, or to the integration's callback URL, signed like the bot's replies)."""
    text = text.strip()
    if not text:
        raise SupportRefused("The reply is empty. Write what the customer should read.")
    hidden = hidden_in_text(text)
    if hidden:
        raise SupportRefused(
            f"The reply holds {hidden}, which the customer would not see but which changes how it reads (pasted "
            "from somewhere?). Remove it and send again."
        )
    if conversation.is_test:
        raise SupportRefused("This is a test conversation: there is no customer to reply to.")
    if conversation.channel_id and not conversation.window_open:
        raise SupportRefused(
            f"WhatsApp's 24-hour window closed at {timezone.localtime(conversation.window_closes_at):%d %b %H:%M}: "
            "free-form replies are refused until the customer writes again (a message template would be needed)."
        )
    unreachable = unreachable_reason(conversation)
    if unreachable:
        raise SupportRefused(unreachable)
    with transaction.atomic():
        # Who answers is read under the lock take-over and hand-back take: a reply from a page left open after
        # a colleague took the conversation, or after it went back to the bot, is refused, never sent over them.
        locked = (
            Conversation.objects.select_for_update(of=("self",)).select_related("assigned_to").get(pk=conversation.pk)
        )
        if locked.state == Conversation.State.BOT:
            raise SupportRefused(
                f"The bot answers this conversation{_handed_back(locked)}, so the reply was not sent. Take it over to "
                "reply."
            )
        if locked.state == Conversation.State.HUMAN and locked.assigned_to_id not in (None, by.pk):
            raise SupportRefused(
                f"{locked.assigned_to} holds this conversation{_at(' since', locked)}, so the reply was not sent: "
                "the customer would hear from two people. Take it over from them to reply."
            )
        conversation.state, conversation.assigned_to_id = locked.state, locked.assigned_to_id
        if conversation.state == Conversation.State.WAITING:  # replying is taking it, and logged as such
            conversation.state, conversation.assigned_to = Conversation.State.HUMAN, by
            ConversationEvent.objects.create(conversation=conversation, kind=Kind.TAKEN_OVER, by=by, note="by replying")
        message = Message.objects.create(conversation=conversation, role=Message.Role.STAFF, content=text, sent_by=by)
        kind = Outbound.Kind.WHATSAPP if conversation.channel_id else Outbound.Kind.CALLBACK
        _send(conversation, message, kind, text)
        ConversationEvent.objects.create(conversation=conversation, kind=Kind.STAFF_REPLY, by=by)
        # What the customer wrote while a person held the conversation is read now that one answers it.
        last_said = conversation.messages.filter(role=Message.Role.USER).order_by("-id").first()
        if last_said is not None:
            read_receipt(conversation=conversation, message=last_said)
        conversation.save(update_fields=["state", "assigned_to", "updated_at"])
    return message


def automatic_text(*, conversation: Conversation, text: str, to_opted_out: bool = False) -> Message | None:
    """A text Switchboard sends by itself (a handover notice, an apology, a confirmation), through the outbox.

    Not to a customer who opted out of automatic messages, but for the confirmation that they did.
    """
    from ..models import WhatsAppContact

    if not text.strip() or not conversation.channel_id:
        return None
    if (
        not to_opted_out
        and WhatsAppContact.objects.filter(
            channel_id=conversation.channel_id, contact=conversation.contact, opted_out_at__isnull=False
        ).exists()
    ):
        return None
    message = Message.objects.create(conversation=conversation, role=Message.Role.AUTOMATIC, content=text)
    _send(conversation, message, Outbound.Kind.WHATSAPP, text)
    return message


def read_receipt(*, conversation: Conversation, message: Message) -> Outbound | None:
    """Queue the read receipt for a customer's WhatsApp message: blue ticks, with "typing…" while a bot
    answer is on its way (whatsapp/send.py decides when it goes out). Once per message."""
    if not conversation.channel_id or not message.external_id:
        return None
    if Outbound.objects.filter(kind=Outbound.Kind.READ, message=message).exists():
        return None
    return _send(conversation, message, Outbound.Kind.READ, "")


def _send(conversation: Conversation, message: Message, kind: str, text: str) -> Outbound:
    from .. import queue
    from ..whatsapp.formatting import whatsapp_text  # the whatsapp package imports this module back

    row = Outbound.objects.create(
        kind=kind,
        conversation=conversation,
        message=message,
        text=whatsapp_text(text) if kind == Outbound.Kind.WHATSAPP else "",
    )
    queue.publish_on_commit(queue.DELIVER_OUTBOUND, row.pk)
    return row


def feedback_give(*, message: Message, by, good: bool, note: str = "") -> Feedback:
    """Good or not good, on one bot reply (one per person: giving it again changes it)."""
    if message.role != Message.Role.ASSISTANT:
        raise SupportRefused("Feedback is for the bot's replies.")
    with transaction.atomic():
        feedback, _ = Feedback.objects.update_or_create(
            message=message, by=by, defaults={"good": good, "note": note.strip()[:2000]}
        )
        ConversationEvent.objects.create(
            conversation_id=message.conversation_id,
            kind=Kind.FEEDBACK,
            by=by,
            # In words, as the buttons say it: an emoji shows as a box where the font has none.
            # Which reply: the event sits in the timeline when it was given, maybe turns later.
            note=f"{'Good' if good else 'Not good'}, on the reply of {timezone.localtime(message.created_at):%H:%M:%S}"
            + (f" — {note.strip()[:2000]}" if note.strip() else ""),
        )
    return feedback
