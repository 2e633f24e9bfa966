"""Where conversations come from besides the console: API integrations and WhatsApp channels, and what was sent back."""

from __future__ import annotations

from django.db import models

from connectors.models import ProviderConnection

from .log import Call, PromptTemplate


class Integration(models.Model):
    """A chatbot platform that sends customer messages through the API, with the templates and connections it may use.

    Its token is shown once when created and stored only as a SHA-256 hash: tokens are long random strings,
    so a plain hash is enough and lets a request be matched with one indexed lookup.
    """

    name = models.CharField(max_length=100, unique=True)
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
    callback_url = models.URLField(blank=True, help_text="Receives each final reply as a signed POST.")
    callback_secret_encrypted = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IdempotencyKey(models.Model):
    """The first call made for a client's Idempotency-Key: a repeat returns it and makes no second call."""

    integration = models.ForeignKey(Integration, on_delete=models.CASCADE, related_name="idempotency_keys")
    key = models.CharField(max_length=200)
    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["integration", "key"], name="idempotency_key_once")]

    def __str__(self) -> str:
        return f"{self.integration}: {self.key}"


class CallbackAttempt(models.Model):
    """One try at posting a final reply to an integration's callback URL."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="callback_attempts")
    attempt = models.PositiveSmallIntegerField()
    url = models.URLField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["call", "attempt"]

    def __str__(self) -> str:
        return f"Callback for call {self.call_id}, attempt {self.attempt}: {self.http_status or self.error}"


class WhatsAppChannel(models.Model):
    """One WhatsApp Business number: Meta's webhook for it comes in here, replies go out through the Graph API."""

    name = models.CharField(max_length=100, unique=True)
    phone_number_id = models.CharField(max_length=50, unique=True, help_text="From Meta's WhatsApp Manager.")
    verify_token = models.CharField(max_length=100, help_text="Typed into Meta's webhook setup; checked on GET.")
    app_secret_encrypted = models.TextField(editable=False)
    access_token_encrypted = models.TextField(editable=False)
    graph_base_url = models.CharField(max_length=200, default="https://graph.facebook.com")
    graph_version = models.CharField(max_length=10, default="v23.0")
    template = models.ForeignKey(PromptTemplate, on_delete=models.PROTECT, related_name="channels")
    connection = models.ForeignKey(ProviderConnection, on_delete=models.PROTECT, related_name="channels")
    variables = models.JSONField(default=dict, blank=True, help_text="The template's variables, e.g. business_name.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class WhatsAppSend(models.Model):
    """One try at sending a reply to the customer through the Graph API."""

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="whatsapp_sends")
    attempt = models.PositiveSmallIntegerField()
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    message_id = models.CharField(max_length=200, blank=True, help_text="Meta's wamid of the sent message.")
    error_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["call", "attempt"]

    def __str__(self) -> str:
        return f"WhatsApp send for call {self.call_id}, attempt {self.attempt}"
