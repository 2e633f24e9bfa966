from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.deconstruct import deconstructible
from simple_history.models import HistoricalRecords

from config.names import validate_name

from . import crypto
from .providers import adapter_for
from .providers.anthropic import VERSIONS as ANTHROPIC_VERSIONS
from .safety import root_url_problem, url_save_check

MISTRAL_BASE_URL = "https://api.mistral.ai/v1"
DEFAULT_MODEL = "mistral-small-latest"


@deconstructible
class OutboundURLValidator:
    """A URL Switchboard will call (connectors/safety.py decides): https, public, or a host listed in
    ALLOWED_PROVIDER_HOSTS. A name that does not resolve yet passes; `url_save_check` warns about it."""

    def __init__(self, example: str = "https://api.mistral.ai/v1"):
        self.example = example

    def __call__(self, value: str) -> None:
        if value:
            problem, _ = url_save_check(value, self.example)
            if problem:
                raise ValidationError(problem)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OutboundURLValidator) and other.example == self.example


validate_base_url = OutboundURLValidator()


def _number(value: float) -> str:
    """1,000,000 and 0.1 as people write them, not 1e+06."""
    return f"{int(value):,}" if float(value).is_integer() and abs(value) < 1e15 else f"{value:,.6g}"


@deconstructible
class RangeValidator:
    """A number within [low, high], refused with the field's name and its range."""

    def __init__(self, low: float, high: float, name: str, note: str = ""):
        self.low, self.high, self.name, self.note = low, high, name, note

    def __call__(self, value) -> None:
        if value is not None and not self.low <= value <= self.high:
            note = f" ({self.note})" if self.note else ""
            low, high, given = (_number(n) for n in (self.low, self.high, value))
            raise ValidationError(f"{self.name} must be between {low} and {high}{note}; {given} is not.")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeValidator) and vars(self) == vars(other)


class ProviderConnection(models.Model):
    """Where and how to reach one AI provider: base URL, API key and the model to ask."""

    class Provider(models.TextChoices):
        MISTRAL = "mistral", "Mistral"
        OPENAI_COMPATIBLE = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic"

    name = models.CharField(
        max_length=100,
        unique=True,
        validators=[validate_name],
        error_messages={"unique": "A connection with this name exists: choose another name, or edit that one."},
    )
    provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.MISTRAL)
    base_url = models.CharField(
        max_length=500,
        default=MISTRAL_BASE_URL,
        validators=[validate_base_url],
        help_text="The API root; /chat/completions (Anthropic: /messages) is added to it.",
    )
    api_version = models.CharField(
        "API version",
        max_length=20,
        blank=True,
        choices=[(version, label) for version, label in ANTHROPIC_VERSIONS.items()],
        help_text="Anthropic only: the anthropic-version sent, each with its rules. Empty: 2023-06-01.",
    )
    fallback = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="fallback_for",
        help_text="When a call fails for good here (retries spent, or this connection's key, model or setup is "
        "wrong), the same message goes to this connection. Never for an error the message itself causes.",
    )
    free = models.BooleanField(
        default=False,
        help_text="A model you run yourself (Ollama, vLLM, llama.cpp): its calls cost nothing, whatever the "
        "model is called.",
    )
    # Fernet ciphertext; read it only through `api_key`.
    api_key_encrypted = models.TextField(blank=True, editable=False)
    api_key_last4 = models.CharField(max_length=4, blank=True, editable=False)
    api_key_changed_at = models.DateTimeField(null=True, blank=True, editable=False)
    model = models.CharField(max_length=200, default=DEFAULT_MODEL, validators=[validate_name])
    max_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[RangeValidator(1, 1_000_000, "Max tokens")],
        help_text="Leave empty to let the provider decide.",
    )
    temperature = models.FloatField(
        null=True,
        blank=True,
        validators=[RangeValidator(0, 2, "Temperature", "Mistral takes 0 to 1.5, OpenAI 0 to 2")],
        help_text="Empty for the provider's default. Mistral takes 0 to 1.5, OpenAI and compatibles 0 to 2, "
        "Anthropic 0 to 1 (none under API version 2026-10-21).",
    )
    timeout_seconds = models.FloatField(
        default=30.0,
        validators=[RangeValidator(0.1, 600, "The timeout", "in seconds")],
        help_text="How long to wait for a reply before giving up.",
    )
    max_attempts = models.PositiveSmallIntegerField(
        default=3,
        validators=[RangeValidator(1, 10, "Max attempts")],
        help_text="Tries per message when the provider is busy, rate-limited, slow or unreachable. "
        "Errors a retry cannot fix (bad key, bad model, bad request) are never retried.",
    )
    rate_limit_per_second = models.FloatField(
        null=True,
        blank=True,
        validators=[RangeValidator(0.01, 10_000, "The rate limit", "requests per second; leave it empty for none")],
        help_text="Most requests per second, across all workers (Mistral's free tier: 1).",
    )
    max_concurrent = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[RangeValidator(1, 10_000, "Max calls at once", "leave it empty for no limit")],
        help_text="Most calls in flight at once.",
    )
    # The last "Check connection": what the provider offers this key, and whether a one-token chat worked.
    available_models = models.JSONField(default=list, blank=True, editable=False)
    checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    check_ok = models.BooleanField(null=True, editable=False)
    check_message = models.TextField(blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Who changed what and when. The ciphertext is left out: a replaced key shows as a new api_key_changed_at.
    history = HistoricalRecords(
        excluded_fields=[
            "api_key_encrypted",
            "api_key_last4",
            "updated_at",
            "available_models",
            "checked_at",
            "check_ok",
            "check_message",
        ]
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(timeout_seconds__gt=0) & models.Q(timeout_seconds__lte=600),
                name="connection_timeout_between_0_and_600s",
            ),
            models.CheckConstraint(
                condition=models.Q(max_attempts__gte=1) & models.Q(max_attempts__lte=10),
                name="connection_max_attempts_between_1_and_10",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        """Rules of the chosen wire shape: a setting the provider would refuse is refused here, when saved."""
        super().clean()
        if self.provider != self.Provider.ANTHROPIC and self.api_version:
            raise ValidationError({"api_version": "The API version is Anthropic's setting; leave it empty."})
        problem = root_url_problem(self.base_url or "", "https://api.mistral.ai/v1")
        if problem:
            raise ValidationError({"base_url": problem})
        problem = adapter_for(self).temperature_problem(self.temperature)
        if problem:
            raise ValidationError({"temperature": problem})
        chain, hop = [self.name], self.fallback
        while hop is not None:
            if hop.pk == self.pk or hop.name in chain:
                raise ValidationError(
                    {"fallback": f"A loop: {' → '.join([*chain, hop.name])}. A chain of fallbacks must end."}
                )
            chain.append(hop.name)
            hop = hop.fallback

    def fallback_chain(self) -> list[ProviderConnection]:
        """The connections that answer when this one cannot, in order (loops were refused when saved)."""
        chain, hop, seen = [], self.fallback, {self.pk}
        while hop is not None and hop.pk not in seen:
            chain.append(hop)
            seen.add(hop.pk)
            hop = hop.fallback
        return chain

    def set_api_key(self, raw_key: str) -> None:
        raw_key = raw_key.strip()
        self.api_key_encrypted = crypto.encrypt(raw_key) if raw_key else ""
        self.api_key_last4 = raw_key[-4:] if len(raw_key) >= 12 else ""
        self.api_key_changed_at = timezone.now()

    @property
    def key_hint(self) -> str:
        """How the key is shown anywhere in the UI: never the key, at most its last four characters."""
        if not self.api_key_encrypted:
            return "not set"
        return f"…{self.api_key_last4}" if self.api_key_last4 else "set"


def decrypted_api_key(connection: ProviderConnection) -> str:
    """The connection's key in the clear, for the one place that sends it (and the checks around it).

    A function, not a property or method: templates and the admin's readonly fields resolve attribute
    names on a model, so a key reachable as one was printed on a view-only admin page.
    """
    return crypto.decrypt(connection.api_key_encrypted) if connection.api_key_encrypted else ""


class ModelPrice(models.Model):
    """What a model costs, in US dollars per million tokens; each finished call stores its cost from this."""

    model = models.CharField(
        max_length=200, unique=True, help_text="The model name exactly as sent, e.g. mistral-small-latest."
    )
    input_per_million = models.DecimalField(max_digits=10, decimal_places=4, help_text="USD per 1M prompt tokens.")
    output_per_million = models.DecimalField(max_digits=10, decimal_places=4, help_text="USD per 1M completion tokens.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["model"]

    def __str__(self) -> str:
        return f"{self.model}: ${self.input_per_million}/${self.output_per_million} per 1M tokens"

    def cost(self, prompt_tokens: int | None, completion_tokens: int | None) -> Decimal:
        """USD, rounded to the micro-dollar the log stores."""
        total = (
            Decimal(prompt_tokens or 0) * self.input_per_million
            + Decimal(completion_tokens or 0) * self.output_per_million
        )
        return (total / Decimal(1_000_000)).quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)
