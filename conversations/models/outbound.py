from __future__ import annotations

from django.db import models
from django.utils import timezone

from .log import Call, Conversation, Message


class Outbound(models.Model):
    """One message Switchboard sends out: a reply to a WhatsApp customer, a call's outcome to an
    integration's callback URL, or the read receipt (with "typing…") for a customer's WhatsApp message.
    Created in the same transaction as what it reports, before anything is sent, so that it survives a
    broker restart: the sweeper brings it back exactly as it does calls.

    Its tries are CallbackAttempt or WhatsAppSend rows (a read receipt keeps only its last error); this row
    says where the delivery stands.
    """

    class Kind(models.TextChoices):
        CALLBACK = "callback", "Callback"
        WHATSAPP = "whatsapp", "WhatsApp message"
        READ = "read", "WhatsApp read receipt"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Sending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    kind = models.CharField(max_length=20, choices=Kind.choices)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="outbound")
    call = models.ForeignKey(
        Call, on_delete=models.CASCADE, null=True, blank=True, related_name="outbound", help_text="What it reports."
    )
    # A message of the team or an automatic text (no call): the transcript shows it, the customer receives it.
    # For a read receipt, the customer's message it marks as read.
    message = models.ForeignKey(
        Message,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="outbound",
        help_text="What it sends (or, for a read receipt, the customer's message it marks read).",
    )
    text = models.TextField(blank=True, help_text="What the customer receives (WhatsApp); a callback is built at send.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    tries = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # As for calls: when it may be tried (now, or after a backoff), and the claim's fencing token.
    run_after = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One delivery of each kind per call: a sweeper or a retried record never makes a second.
            models.UniqueConstraint(
                fields=["call", "kind"], condition=models.Q(call__isnull=False), name="outbound_once_per_call"
            ),
        ]
        indexes = [
            # The sweeper's scan for deliveries stuck in queued or running.
            models.Index(fields=["status", "run_after"], name="outbound_status_run_after_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SENT, self.Status.FAILED)
