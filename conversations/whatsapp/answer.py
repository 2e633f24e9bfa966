"""What happens to one customer message that arrived on WhatsApp, once it is stored.

Each message the bot handles is marked read at once (with "typing…" while its answer is on the way); one
that arrives while a person holds the conversation is marked read when they reply.

In this order: STOP and START (whole-message words) change whether automatic replies reach the customer,
with one confirmation each; a customer who opted out gets nothing automatic, and what they write waits
in the inbox for a person; a conversation waiting for a
person or held by one gets no bot answer (staff see the message); a picture, a voice note, a document, a
location or a sticker gets the channel's answer to what is not text; a message asking for a person (one of
the channel's words, whole, any case) hands the conversation over with the channel's notice; anything else
is for the bot, and messages that follow each other within the channel's burst window get one answer.

Bursts, and how they stay durable: the first message of a burst queues its call at once, due after the
window; each message within the window moves that same call on to itself (so the call carries every
message up to it) and its due time on by the window, at most BURST_LIMIT after the call was queued. The
call row exists from the first message, so a worker dying or a broker message lost changes nothing the
sweeper would not put right, and the worker only claims a call once it is due.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import cache

from django.utils import timezone

from .. import queue, services
from ..contacts import contact_from_whatsapp
from ..models import Call, Conversation, ConversationEvent, Message, WhatsAppChannel, WhatsAppContact
from ..support.services import automatic_text, bot_answers, conversation_hand_over, read_receipt

BURST_LIMIT = timedelta(seconds=10)
Kind = ConversationEvent.Kind


def message_answer(*, channel: WhatsAppChannel, message_id: str, wa_id: str, text: str, media_type: str) -> Call | None:
    """Store the customer's message and do what it asks for (inside the caller's transaction): the call that
    will answer it, or None when no bot answer is due."""
    contact = contact_from_whatsapp(wa_id)
    # One contact's messages are handled one at a time (their row is locked until this commits): two first
    # messages arriving together would otherwise each start a conversation and each get an answer.
    known, _ = WhatsAppContact.objects.get_or_create(channel=channel, contact=contact)
    WhatsAppContact.objects.select_for_update().filter(pk=known.pk).first()
    conversation = Conversation.objects.filter(channel=channel, contact=contact).order_by("-updated_at").first()
    if conversation is None:
        conversation = services.conversation_start(
            connection=channel.connection,
            template=channel.template,
            variables=channel.variables,
            contact=contact,
            channel=channel,
        )
    elif conversation.variables != (channel.variables or {}):
        # The channel's values are the truth: a template published since with another placeholder, or a value
        # changed on the channel, applies to a conversation that began before (else it would be refused).
        conversation.variables = dict(channel.variables or {})
        conversation.save(update_fields=["variables"])
    message = services.message_add(conversation, text.strip() or "[empty message]", message_id, media_type)
    conversation.last_customer_at = message.created_at
    conversation.save(update_fields=["last_customer_at", "updated_at"])
    if bot_answers(conversation):  # a person holding it reads it (the receipt goes with their reply)
        read_receipt(conversation=conversation, message=message)

    if not media_type and _is_one_of(text, channel.stop_keywords):
        return _opt(channel, conversation, out=True)
    opted_out = WhatsAppContact.objects.filter(channel=channel, contact=contact, opted_out_at__isnull=False).exists()
    if opted_out and not media_type and _is_one_of(text, channel.start_keywords):
        return _opt(channel, conversation, out=False)
    if opted_out:  # nothing automatic reaches them, but a person may answer what they wrote
        conversation_hand_over(
            conversation=conversation, reason=Conversation.Reason.OPTED_OUT, event=Kind.WROTE_OPTED_OUT, note=text[:200]
        )
        return None
    if not bot_answers(conversation):
        return None
    if media_type:
        if media_type != "reaction":  # a thumbs-up on a reply needs no answer
            ConversationEvent.objects.create(conversation=conversation, kind=Kind.NOT_TEXT, note=media_type)
            automatic_text(conversation=conversation, text=channel.not_text_reply)
        return None
    if _mentions_one_of(text, channel.handover_keywords):
        conversation_hand_over(
            conversation=conversation,
            reason=Conversation.Reason.ASKED,
            event=Kind.ASKED_FOR_A_PERSON,
            note=text[:200],
            notice=channel.handover_text,
        )
        return None
    return _answer_in_burst(channel, conversation, message)


def _answer_in_burst(channel: WhatsAppChannel, conversation: Conversation, message: Message) -> Call:
    window = timedelta(seconds=channel.burst_seconds)
    if window:
        pending = (
            Call.objects.filter(conversation=conversation, status=Call.Status.QUEUED, attempt=1)
            .order_by("-id")
            .only("id", "queued_at", "run_after")
            .first()
        )
        if pending is not None:
            now = timezone.now()
            due = max(pending.run_after, min(pending.queued_at + BURST_LIMIT, now + window))
            # Only while still queued: a worker that claimed it meanwhile answers what it read, and this
            # message gets a call of its own.
            if Call.objects.filter(pk=pending.pk, status=Call.Status.QUEUED).update(message=message, run_after=due):
                queue.publish_on_commit(queue.EXECUTE_CALL, pending.pk, countdown=(due - now).total_seconds())
                pending.message, pending.run_after = message, due
                return pending
    return services.call_queue(conversation=conversation, message=message, delay=window.total_seconds())


def _opt(channel: WhatsAppChannel, conversation: Conversation, *, out: bool) -> None:
    contact, created = WhatsAppContact.objects.get_or_create(channel=channel, contact=conversation.contact)
    if out == (contact.opted_out_at is not None) and not created:
        return None  # STOP twice: one confirmation is enough
    contact.opted_out_at = timezone.now() if out else None
    contact.save(update_fields=["opted_out_at", "changed_at"])
    if (
        not out
        and conversation.state == Conversation.State.WAITING
        and conversation.reason == Conversation.Reason.OPTED_OUT
    ):
        # Waiting only because nothing automatic could answer: the bot answers again from the next message.
        conversation.state, conversation.reason, conversation.waiting_since = Conversation.State.BOT, "", None
        conversation.save(update_fields=["state", "reason", "waiting_since", "updated_at"])
    ConversationEvent.objects.create(conversation=conversation, kind=Kind.OPTED_OUT if out else Kind.OPTED_IN)
    automatic_text(
        conversation=conversation, text=channel.opted_out_text if out else channel.opted_in_text, to_opted_out=True
    )
    return None


def _is_one_of(text: str, words: str) -> bool:
    """The whole message is one of the words (STOP, not "please don't stop my order"), any case."""
    said = re.sub(r"[\s.!¡?¿]+", " ", text).strip().casefold()
    return said in {word.casefold() for word in WhatsAppChannel.words(words)}


def _mentions_one_of(text: str, words: str) -> bool:
    """One of the words appears as a whole word, any case ("talk to a HUMAN please")."""
    return bool(_word_pattern(words).search(text))


@cache
def _word_pattern(words: str) -> re.Pattern:
    alternatives = "|".join(re.escape(word) for word in WhatsAppChannel.words(words)) or r"(?!)"
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
