from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from config.names import validate_name
from connectors.errors import ErrorKind, Help, error_summary, explain
from connectors.models import ProviderConnection

from .. import rendering

WHATSAPP_WINDOW = timedelta(hours=24)


class PromptTemplate(rendering.PromptText, models.Model):
    """A system prompt and a user message with `{{variable}}` placeholders: the published version's text
    (conversations/models/prompts.py keeps every version)."""

    name = models.CharField(max_length=100, unique=True, validators=[validate_name])
    system_prompt = models.TextField(blank=True, help_text="Sent as the system message, e.g. who the bot is.")
    user_message = models.TextField(
        default="{{customer_message}}",
        help_text="Sent as the user message. {{customer_message}} is what the customer wrote.",
    )
    published = models.ForeignKey(
        "TemplateVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The version the console, the API and the channels use; its text is the fields above.",
    )
    required_test_set = models.ForeignKey(
        "TestSet",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="A version is published only after a run of this set on it passed every case.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = HistoricalRecords(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def prompt_name(self) -> str:
        return self.name

    def clean(self) -> None:
        """A placeholder mistyped would be sent as it is, and a user message without {{customer_message}}
        would never send what the customer wrote: both are refused with the fix, wherever it is saved."""
        super().clean()
        errors = rendering.text_problems(self.system_prompt, self.user_message)
        if errors:
            raise ValidationError(errors)


class Conversation(models.Model):
    """One customer's exchange with the bot through one connection and template, and who answers it now.

    `state` says who answers the customer's next message: the bot, nobody yet (waiting for a person, with
    why and since when: the inbox), or a person (who holds it). While it is not the bot's, no provider call
    is made for the customer's messages.
    """

    class State(models.TextChoices):
        BOT = "bot", "Bot"
        WAITING = "waiting", "Waiting for a person"
        HUMAN = "human", "With a person"

    class Reason(models.TextChoices):
        ASKED = "asked", "Asked for a person"
        MODEL = "model", "The bot handed over"
        PROVIDER_FAILURE = "provider_failure", "The provider failed"
        STAFF = "staff", "Taken over by staff"
        OPTED_OUT = "opted_out", "Wrote after opting out"

    contact = models.CharField(max_length=200, help_text="Who the customer is: a phone number, or 'test console'.")
    connection = models.ForeignKey(ProviderConnection, on_delete=models.PROTECT, related_name="conversations")
    # Empty for conversations that arrive already shaped as chat messages (the chat-completions endpoint).
    template = models.ForeignKey(
        PromptTemplate, on_delete=models.PROTECT, related_name="conversations", null=True, blank=True
    )
    template_version = models.ForeignKey(
        "TemplateVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Set for a test run of one version; otherwise each call uses the version published then.",
    )
    integration = models.ForeignKey(
        "Integration",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
        help_text="The platform that sent it through the API; empty for the test console.",
    )
    channel = models.ForeignKey(
        "WhatsAppChannel",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
        help_text="The WhatsApp number it came in on.",
    )
    variables = models.JSONField(default=dict, blank=True)
    system_prompt = models.TextField(blank=True, help_text="The rendered system prompt, sent before every turn.")
    overrides = models.JSONField(
        default=dict, blank=True, help_text="model, temperature or max_tokens set for this conversation only."
    )
    state = models.CharField(max_length=20, choices=State.choices, default=State.BOT)
    reason = models.CharField(max_length=20, choices=Reason.choices, blank=True, help_text="Why it left the bot.")
    waiting_since = models.DateTimeField(null=True, blank=True, help_text="Since when the customer waits for a person.")
    assigned_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The customer's last message: WhatsApp allows free-form replies within 24 hours of it.
    last_customer_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at"]
        permissions = [("handle_conversation", "Can take over conversations and reply to customers")]
        indexes = [
            # The log's default view: newest conversations first.
            models.Index(fields=["-updated_at"], name="conversation_recent_idx"),
            # Looking up a contact's conversations.
            models.Index(fields=["contact", "-updated_at"], name="conversation_contact_idx"),
            # The inbox (oldest waiting first) and the navigation's count: only the few not with the bot.
            models.Index(
                fields=["state", "waiting_since"],
                condition=~models.Q(state="bot"),
                name="conversation_inbox_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.contact} via {self.connection}"

    @property
    def is_test(self) -> bool:
        """Started from the console or a command, not by a real customer through the API or WhatsApp."""
        return self.integration_id is None and self.channel_id is None

    @property
    def window_closes_at(self):
        """When WhatsApp stops taking free-form replies (24 hours after the customer's last message)."""
        if self.channel_id is None or self.last_customer_at is None:
            return None
        return self.last_customer_at + WHATSAPP_WINDOW

    @property
    def window_open(self) -> bool:
        closes = self.window_closes_at
        return self.channel_id is None or (closes is not None and closes > timezone.now())


class Message(models.Model):
    """One turn of a conversation: what the customer said, what the bot answered, what a person of the team
    wrote, or a text Switchboard sent by itself (a handover notice, an apology, an opt-out confirmation)."""

    class Role(models.TextChoices):
        USER = "user", "Customer"
        ASSISTANT = "assistant", "Assistant"
        STAFF = "staff", "Staff"
        AUTOMATIC = "automatic", "Automatic"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=20, choices=Role.choices)
    content = models.TextField(help_text="As sent to the provider (the template's user message, rendered).")
    customer_message = models.TextField(blank=True, help_text="What the customer wrote, before the template.")
    # The channel's own id for the message (WhatsApp's wamid): Meta delivers at least once, this makes it once.
    external_id = models.CharField(max_length=200, null=True, blank=True)
    # What arrived when it was not text (image, audio, document, location, sticker…); empty for text.
    media_type = models.CharField(max_length=30, blank=True)
    sent_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # Unique where set, and only those indexed: most messages (replies, API, console) have none.
            models.UniqueConstraint(
                fields=["external_id"], condition=models.Q(external_id__isnull=False), name="message_external_id_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_role_display()}: {self.content[:60]}"


class Call(models.Model):
    """One attempt at a provider call, created before the call and completed after it.

    The row is the record: the task only carries its id, so a lost broker message can be found and sent
    again from here, and what was sent (without the key) and what came back is kept for the log.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="calls")
    # No index of their own for message and connection: call_one_row_per_attempt (message, attempt) and
    # call_connection_recent_idx (connection, queued_at) start with them. Every index is written on every
    # status change of every call, so none is kept twice.
    message = models.ForeignKey(
        Message,
        on_delete=models.CASCADE,
        related_name="calls",
        db_index=False,
        help_text="The customer message this call answers.",
    )
    reply = models.OneToOneField(Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="answered_by")
    connection = models.ForeignKey(ProviderConnection, on_delete=models.PROTECT, related_name="calls", db_index=False)
    attempt = models.PositiveSmallIntegerField(default=1, help_text="Which try at answering this message, all hops.")
    # A fallback hop starts counting its connection's tries again (max_attempts is per connection).
    connection_attempt = models.PositiveSmallIntegerField(default=1)
    template_version = models.ForeignKey(
        "TemplateVersion",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="calls",
        db_index=False,
        help_text="The template version that produced this call's prompt.",
    )
    fallback_from = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="fallbacks",
        help_text="The failed call whose connection named this call's connection as its fallback.",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)

    model = models.CharField(max_length=200, blank=True)
    request = models.JSONField(default=dict, blank=True, help_text="The body as sent; never the key.")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True)
    reply_text = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=40, blank=True)
    provider_request_id = models.CharField(max_length=200, blank=True)
    error_kind = models.CharField(max_length=20, choices=ErrorKind.choices, blank=True)
    error_message = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    cost_usd = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)

    worker = models.CharField(max_length=200, blank=True, help_text="The Celery worker that made this attempt.")
    queued_at = models.DateTimeField(auto_now_add=True)
    # When the call may run: now for a first attempt, after the backoff for a retry. The sweeper
    # re-queues a call still queued well past this time (its broker message was lost).
    run_after = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        permissions = [("send_test", "Can send test messages from the console")]
        constraints = [
            models.UniqueConstraint(fields=["message", "attempt"], name="call_one_row_per_attempt"),
        ]
        indexes = [
            # The call log's default view and its status filter.
            models.Index(fields=["status", "-queued_at"], name="call_status_recent_idx"),
            # The sweeper's scan for calls stuck in queued or running.
            models.Index(fields=["status", "run_after"], name="call_status_run_after_idx"),
            # The call log's first page, and the overview's period (queued_at >= since).
            models.Index(fields=["-queued_at", "-id"], name="call_recent_idx"),
            # The call log filtered by connection, or by error kind, newest first.
            models.Index(fields=["connection", "-queued_at"], name="call_connection_recent_idx"),
            models.Index(fields=["error_kind", "-queued_at"], name="call_error_kind_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"Call {self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    def latest_attempt(self) -> Call:
        """The newest attempt at answering the same customer message (this call, or a retry of it)."""
        return Call.objects.filter(message_id=self.message_id).order_by("-attempt").first() or self

    @property
    def answered_by_fallback(self) -> bool:
        return self.fallback_from_id is not None

    @property
    def help(self) -> Help | None:
        if not self.error_kind:
            return None
        about_model = self.error_kind == ErrorKind.INVALID_MODEL or (
            self.error_kind == ErrorKind.AUTH and self.http_status == 403  # a model not on the plan
        )
        override = (self.conversation.overrides or {}).get("model") if about_model else None
        if override and self.model == override and self.conversation.integration_id:
            # Named in an API request's `model`: the platform that sent it has the fix, not the team.
            return Help(
                f"The platform's request named the model {override!r}, which this provider does not offer (the "
                f"connection's own model is {self.connection.model!r}).",
                "Tell whoever runs the platform: its requests should name a model GET /api/v1/models lists, or "
                "leave out model to use the connection's. Nothing on the connection needs changing.",
            )
        if override and self.model == override:
            # The model was chosen for this conversation, not set on the connection: the fix is the sender's.
            return Help(
                f"The model override {override!r} is not a model this provider offers (the connection's own "
                f"model is {self.connection.model!r}).",
                "Send again with the model override empty, or with a model the provider lists (Check connection "
                "on the Connections page lists them). This conversation keeps its override: start a new one.",
            )
        return explain(self.error_kind, self.http_status, self.error_message)

    @property
    def error_summary(self) -> str:
        """ "Invalid model: mistral-tiny" rather than "Invalid model: Invalid model: mistral-tiny"."""
        if not self.error_kind:
            return ""
        return error_summary(self.get_error_kind_display(), self.error_message)

    @property
    def total_tokens(self) -> int | None:
        if self.prompt_tokens is None or self.completion_tokens is None:
            return None
        return self.prompt_tokens + self.completion_tokens
