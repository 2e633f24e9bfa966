"""Where conversations come from besides the console: API integrations and WhatsApp channels, and what was sent back."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from simple_history.models import HistoricalRecords

from config.names import hidden_in_text, validate_name
from connectors.models import OutboundURLValidator, ProviderConnection
from connectors.safety import root_url_problem

from ..payloads import validate_variables
from .log import Call, PromptTemplate


class Integration(models.Model):
    """A chatbot platform that sends customer messages through the API, with the templates and connections it may use.

    Its token is shown once when created and stored only as a SHA-256 hash: tokens are long random strings,
    so a plain hash is enough and lets a request be matched with one indexed lookup.
    """

    name = models.CharField(max_length=100, unique=True, validators=[validate_name])
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_hint = models.CharField(max_length=12, editable=False, help_text="The token's first characters.")
    templates = models.ManyToManyField(PromptTemplate, blank=True, related_name="integrations")
    connections = models.ManyToManyField(ProviderConnection, blank=True, related_name="integrations")
    default_connection = models.ForeignKey(
        ProviderConnection,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Used when a request names no connection (and by the chat-completions endpoint).",
    )
    callback_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[OutboundURLValidator("https://chatbot.example.com/switchboard-callback")],
        help_text="Receives each final reply as a signed POST (https, or a host in ALLOWED_PROVIDER_HOSTS).",
    )
    callback_secret_encrypted = models.TextField(blank=True, editable=False)
    is_active = models.BooleanField(
        "enabled", default=True, help_text="A disabled integration's token is refused (401) from the next request on."
    )
    # When the token or the signing secret was last replaced: the history shows these, never the secrets.
    token_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    callback_secret_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The scope (templates, connections) is history too: widening it is a change an auditor looks for.
    history = HistoricalRecords(
        excluded_fields=["token_hash", "token_hint", "callback_secret_encrypted", "last_used_at"],
        m2m_fields=[templates, connections],
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IdempotencyKey(models.Model):
    """The first call made for a client's key for a request: a repeat returns it and makes no second call.

    Two kinds of key: the Idempotency-Key header, and the platform's own `message_id` in the body. Each is
    unique per integration, and remembers a fingerprint of the body it came with, so a repeat with a
    different body is refused (422) instead of answered with another message's reply.
    """

    class Kind(models.TextChoices):
        HEADER = "header", "Idempotency-Key"
        MESSAGE_ID = "message_id", "message_id"

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="idempotency_keys")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.HEADER)
    key = models.CharField(max_length=200)
    request_hash = models.CharField(max_length=64, blank=True, help_text="SHA-256 of the body, without wait.")
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="+", null=True, blank=True)
    # A message to a conversation held by a person has no call: the repeat returns that message's status.
    message = models.ForeignKey("Message", on_delete=models.CASCADE, related_name="+", null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["integration", "kind", "key"], name="idempotency_key_once_per_kind")
        ]

    def __str__(self) -> str:
        return f"{self.integration}: {self.get_kind_display()} {self.key}"


class CallbackAttempt(models.Model):
    """One try at posting a final reply to an integration's callback URL."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="callback_attempts", null=True, blank=True)
    outbound = models.ForeignKey(
        "Outbound", on_delete=models.CASCADE, null=True, blank=True, related_name="callback_attempts"
    )
    attempt = models.PositiveSmallIntegerField()
    url = models.CharField(max_length=500)  # as long as Integration.callback_url
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["call", "attempt"]

    def __str__(self) -> str:
        return f"Callback for call {self.call_id}, attempt {self.attempt}: {self.http_status or self.error}"


# What customers write to ask for a person (whole words, any case), in English, French, Spanish and German.
HANDOVER_KEYWORDS = (
    "human, agent, person, representative, operator, humain, conseiller, conseillère, opérateur, humano, agente, "
    "persona, asesor, asesora, Mensch, Mitarbeiter, Mitarbeiterin, Berater, Beraterin"
)
STOP_KEYWORDS = "STOP, STOPP, UNSUBSCRIBE, ARRET, ARRÊT, BAJA, ABMELDEN"
START_KEYWORDS = "START, SUBSCRIBE, UNSTOP, ALTA, ANMELDEN"


class WhatsAppChannel(models.Model):
    """One WhatsApp Business number: Meta's webhook for it comes in here, replies go out through the Graph API.

    Besides its number and secrets, what its customers get besides the bot: how long a burst of messages is
    waited for, the words and texts of a handover to a person, of an apology, of opting out and in, and the
    answer to something that is not text.
    """

    name = models.CharField(max_length=100, unique=True, validators=[validate_name])
    phone_number_id = models.CharField(max_length=50, unique=True, help_text="From Meta's WhatsApp Manager.")
    verify_token = models.CharField(max_length=100, help_text="Typed into Meta's webhook setup; checked on GET.")
    app_secret_encrypted = models.TextField(editable=False)
    access_token_encrypted = models.TextField(editable=False)
    graph_base_url = models.CharField(
        max_length=200,
        default="https://graph.facebook.com",
        validators=[OutboundURLValidator("https://graph.facebook.com")],
        help_text="Meta's Graph API; the sandbox's address in a demo.",
    )
    graph_version = models.CharField(max_length=10, default="v23.0")
    template = models.ForeignKey(PromptTemplate, on_delete=models.PROTECT, related_name="channels")
    connection = models.ForeignKey(ProviderConnection, on_delete=models.PROTECT, related_name="channels")
    variables = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_variables],
        help_text='The template\'s variables, e.g. {"business_name": "Acme"}.',
    )
    burst_seconds = models.FloatField(
        default=2.0,
        help_text="Messages a customer sends within this many seconds of each other get one answer (at most 10 s "
        "in all); 0 answers each at once.",
    )
    handover_keywords = models.TextField(
        default=HANDOVER_KEYWORDS, help_text="Comma-separated words that ask for a person (whole words, any case)."
    )
    handover_text = models.TextField(
        default="Thank you. A person from our team will answer you here shortly.",
        help_text="Sent when a customer asks for a person, or the bot hands over.",
    )
    handover_marker = models.CharField(
        max_length=50,
        default="[HANDOVER]",
        blank=True,
        help_text="A template may tell the model to write this to hand over; it is never shown to the customer.",
    )
    apology_text = models.TextField(
        default="Sorry, we cannot answer right now. A person from our team will reply here as soon as they can.",
        help_text="Sent when the provider fails for good; the conversation then waits for a person.",
    )
    stop_keywords = models.TextField(default=STOP_KEYWORDS, help_text="Comma-separated words that opt out.")
    start_keywords = models.TextField(default=START_KEYWORDS, help_text="Comma-separated words that opt in again.")
    opted_out_text = models.TextField(
        default="You will get no more automatic messages from us. Write START to get them again."
    )
    opted_in_text = models.TextField(default="Welcome back: automatic replies are on again. Write STOP to stop them.")
    not_text_reply = models.TextField(
        default='I can only read text messages. Please write your question, or write "agent" to talk to a person.',
        help_text="The answer to an image, a voice note, a document, a location or a sticker.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "WhatsApp channel"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(burst_seconds__gte=0) & models.Q(burst_seconds__lte=10),
                name="channel_burst_between_0_and_10s",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    # What customers read, or what is matched against what they write: nothing in them may hide.
    CUSTOMER_FACING = (
        "handover_keywords", "handover_text", "handover_marker", "apology_text", "stop_keywords",
        "start_keywords", "opted_out_text", "opted_in_text", "not_text_reply",
    )  # fmt: skip

    def clean(self) -> None:
        super().clean()
        problem = root_url_problem(self.graph_base_url or "", "https://graph.facebook.com")
        if problem:
            raise ValidationError({"graph_base_url": problem})
        hidden = {field: hidden_in_text(getattr(self, field) or "") for field in self.CUSTOMER_FACING}
        if any(hidden.values()):
            raise ValidationError(
                {
                    field: f"It holds {why}, which the customer would not see; remove it."
                    for field, why in hidden.items()
                    if why
                }
            )

    @staticmethod
    def words(text: str) -> list[str]:
        return [word.strip() for word in text.split(",") if word.strip()]


class WhatsAppRefusal(models.Model):
    """A message in a correctly signed webhook that Switchboard could not take, and why.

    Kept so that a malformed message is acknowledged (Meta would deliver the whole body again for days)
    without being lost silently: the channel's page lists them. Every text here has been made printable.
    """

    channel = models.ForeignKey(WhatsAppChannel, on_delete=models.CASCADE, related_name="refusals")
    message_id = models.CharField(max_length=200, blank=True, help_text="Meta's id for it, if it had a usable one.")
    sender = models.CharField(max_length=100, blank=True)
    reason = models.TextField()
    excerpt = models.TextField(blank=True, help_text="The start of the message as received.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "WhatsApp refusal"
        ordering = ["-created_at", "-id"]
        indexes = [
            # The channel page's list of its latest refusals.
            models.Index(fields=["channel", "-created_at"], name="whatsapp_refusal_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"Refused on {self.channel}: {self.reason[:60]}"


class WhatsAppSend(models.Model):
    """One try at sending a reply to the customer through the Graph API."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="whatsapp_sends", null=True, blank=True)
    outbound = models.ForeignKey(
        "Outbound", on_delete=models.CASCADE, null=True, blank=True, related_name="whatsapp_sends"
    )
    attempt = models.PositiveSmallIntegerField()
    part = models.PositiveSmallIntegerField(default=1, help_text="Which part of a reply split at 4,096 characters.")
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    message_id = models.CharField(max_length=200, blank=True, help_text="Meta's wamid of the sent message.")
    error_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "WhatsApp send"
        ordering = ["call", "attempt"]
        constraints = [
            # A part Meta accepted is on record once: a retried insert after an unclear commit adds nothing,
            # and a later try resumes after it.
            models.UniqueConstraint(
                fields=["outbound", "part"],
                condition=models.Q(outbound__isnull=False) & ~models.Q(message_id=""),
                name="whatsapp_part_delivered_once",
            ),
        ]

    def __str__(self) -> str:
        return f"WhatsApp send for call {self.call_id}, attempt {self.attempt}"
