"""What support staff do and what customers ask of them: every change of hands as a row, feedback on replies,
and each WhatsApp contact's choice to receive automatic replies or not."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .channels import WhatsAppChannel
from .log import Conversation, Message


class ConversationEvent(models.Model):
    """One change in who answers a conversation, or one thing staff did in it: who, when, what."""

    class Kind(models.TextChoices):
        ASKED_FOR_A_PERSON = "asked", "The customer asked for a person"
        MODEL_HANDED_OVER = "model_handover", "The bot handed over"
        PROVIDER_FAILED = "provider_failure", "The provider failed; the customer got the apology"
        TAKEN_OVER = "taken_over", "Taken over"
        ASSIGNED = "assigned", "Assigned"
        HANDED_BACK = "handed_back", "Handed back to the bot"
        STAFF_REPLY = "staff_reply", "Replied"
        OPTED_OUT = "opted_out", "The customer opted out of automatic replies"
        OPTED_IN = "opted_in", "The customer opted in again"
        WROTE_OPTED_OUT = "wrote_opted_out", "The customer wrote after opting out: no automatic reply, a person answers"
        NOT_TEXT = "not_text", "The customer sent something that is not text"
        FEEDBACK = "feedback", "Feedback on a reply"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30, choices=Kind.choices)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            # A conversation's log, in order.
            models.Index(fields=["conversation", "created_at"], name="event_conversation_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.conversation_id})"


class Feedback(models.Model):
    """A person's thumbs up or down on one bot reply, with an optional note; the overview counts them."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    good = models.BooleanField()
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["message", "by"], name="feedback_once_per_person")]

    def __str__(self) -> str:
        return f"{'Good' if self.good else 'Not good'}, on message {self.message_id}"


class WhatsAppContact(models.Model):
    """A customer of one WhatsApp number, as far as their choices go: whether automatic replies may reach them."""

    channel = models.ForeignKey(WhatsAppChannel, on_delete=models.CASCADE, related_name="contacts")
    contact = models.CharField(max_length=200)
    opted_out_at = models.DateTimeField(
        null=True, blank=True, help_text="Set while they asked for no automatic replies."
    )
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "WhatsApp contact"
        constraints = [models.UniqueConstraint(fields=["channel", "contact"], name="whatsapp_contact_once")]

    def __str__(self) -> str:
        return f"{self.contact} on {self.channel}"
