"""What can go wrong talking to a provider, and what staff should do about it.

Every failure becomes a `ProviderError` with one `ErrorKind`. The kind decides whether a retry can help
(`permanent`), and `explain()` turns kind + HTTP status + the provider's own message into the likely cause
and the fix, in the words of the seed guide's error table.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models


class ErrorKind(models.TextChoices):
    AUTH = "auth", "Authentication"
    INVALID_MODEL = "invalid_model", "Invalid model"
    MISSING_MODEL = "missing_model", "Model missing"
    BAD_REQUEST = "bad_request", "Bad request"
    CONTEXT_TOO_LONG = "context_length", "Context too long"
    RATE_LIMITED = "rate_limited", "Rate limited"
    PROVIDER_ERROR = "provider_error", "Provider error"
    TIMEOUT = "timeout", "Timeout"
    NETWORK = "network", "Network error"
    BAD_RESPONSE = "bad_response", "Bad response"
    CONFIG = "config", "Configuration"
    INTERNAL = "internal", "Switchboard error"


# Only these can succeed on a later try; a 401 stays a 401 however often it is sent.
TRANSIENT_KINDS = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.PROVIDER_ERROR, ErrorKind.TIMEOUT, ErrorKind.NETWORK})


@dataclass(frozen=True)
class Help:
    cause: str
    fix: str

    @property
    def in_connection(self) -> bool:
        """The fix is a change to the connection's settings, which only Admins may make: Support staff are
        told to pass it on rather than shown a fix they cannot carry out."""
        return self in _CONNECTION_FIXES


_HELP: dict[str, Help] = {
    ErrorKind.AUTH: Help(
        "The API key is wrong, revoked or missing.",
        "Paste the full key into the connection again (Switchboard sends it as 'Authorization: Bearer KEY', or "
        "as Anthropic's x-api-key).",
    ),
    "forbidden": Help(
        "The key is valid but this model or feature is not available on your plan.",
        "Choose a model your plan includes, or upgrade the plan with the provider.",
    ),
    ErrorKind.INVALID_MODEL: Help(
        "The model name does not exist at this provider.",
        "Use mistral-small-latest, or a model the provider lists for your key (docs.mistral.ai lists current IDs).",
    ),
    ErrorKind.MISSING_MODEL: Help(
        "The request had no model; Mistral answers such a request with an error or an empty reply.",
        "Set the connection's model, for example mistral-small-latest.",
    ),
    ErrorKind.BAD_REQUEST: Help(
        "The provider rejected the request body.",
        "Check the template: messages must be a list with at least one user message and no empty content.",
    ),
    ErrorKind.CONTEXT_TOO_LONG: Help(
        "The system prompt, the conversation's history and the message together are longer than the model's "
        "context window.",
        "Lower CONVERSATION_HISTORY_TOKENS (the history sent with each message), shorten the template's system "
        "prompt, or choose a model with a larger context; a local server may need a larger context size "
        "(llama.cpp: -c).",
    ),
    "not_found": Help(
        "The provider has no API at the address called: the connection's base URL is not its API root (Mistral's "
        "and most OpenAI-compatible ones end in /v1).",
        "Check the connection's base URL: it is the root that /chat/completions (Anthropic: /messages) and "
        "/models are added to, for example https://api.mistral.ai/v1.",
    ),
    "too_large": Help(
        "The request was larger than the provider accepts.",
        "Shorten the template's system prompt, or lower CONVERSATION_HISTORY_TOKENS (the history sent with each "
        "message).",
    ),
    "headers_too_large": Help(
        "The provider refused the request's headers as too large: the connection's API key is far longer than "
        "a key is.",
        "Edit the connection and paste only the key, from the provider's page.",
    ),
    "extra_inputs": Help(
        "The request carried a field this provider does not accept.",
        "Remove the field named in the provider's message from the connection's options.",
    ),
    ErrorKind.RATE_LIMITED: Help(
        "Too many requests for this key's plan.",
        "Send less often or raise the plan's limit; the call can be retried after the Retry-After delay.",
    ),
    ErrorKind.PROVIDER_ERROR: Help(
        "The provider is busy or failing on its side.",
        "Nothing to fix on your side; try again in a moment.",
    ),
    ErrorKind.TIMEOUT: Help(
        "The provider did not answer within the connection's timeout.",
        "Check the provider's status, or raise the connection's timeout for slow models.",
    ),
    ErrorKind.NETWORK: Help(
        "The provider could not be reached.",
        "Check the connection's base URL and that this server can reach the provider's host.",
    ),
    ErrorKind.BAD_RESPONSE: Help(
        "The provider answered, but not with a usable chat completion (not JSON, no choices, or an empty reply).",
        "Check that the base URL points at a chat-completions API (it usually ends in /v1) and that the "
        "model is set; Mistral answers empty when the model is missing.",
    ),
    ErrorKind.INTERNAL: Help(
        "Switchboard itself failed while handling this call (the worker log has the details).",
        "Send again; if it keeps happening, report it to whoever runs Switchboard with the call number.",
    ),
    ErrorKind.CONFIG: Help(
        "The connection is not set up completely, so nothing was sent.",
        "Edit the connection and correct the field named in the message.",
    ),
}


_CONNECTION_FIXES = [
    _HELP[kind]
    for kind in (
        ErrorKind.AUTH,
        "forbidden",
        ErrorKind.INVALID_MODEL,
        ErrorKind.MISSING_MODEL,
        ErrorKind.CONFIG,
        "not_found",
        "headers_too_large",
    )
]


def explain(kind: str, status: int | None = None, message: str = "") -> Help:
    """The likely cause and the fix for a failure, for showing to staff."""
    if kind == ErrorKind.AUTH and status == 403:
        return _HELP["forbidden"]
    if kind == ErrorKind.BAD_REQUEST and "extra inputs" in message.lower():
        return _HELP["extra_inputs"]
    if kind == ErrorKind.BAD_REQUEST and status in (404, 405):  # no such path: a model unknown is INVALID_MODEL
        return _HELP["not_found"]
    if kind == ErrorKind.BAD_REQUEST and status in (413, 431):
        return _HELP["too_large" if status == 413 else "headers_too_large"]
    return _HELP.get(kind, _HELP[ErrorKind.PROVIDER_ERROR])


def error_summary(label: str, message: str) -> str:
    """ "Invalid model: mistral-tiny" rather than "Invalid model: Invalid model: mistral-tiny": providers often
    start their message with what our kind's label says already."""
    return message if message.lower().startswith(label.lower()) else f"{label}: {message}"


class ProviderError(Exception):
    """A failed provider call: the kind, the provider's own words, and what was seen on the wire.

    `message` never contains the API key: the client scrubs it before raising.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        body: str = "",
        retry_after: float | None = None,
        skipped: bool = False,
    ) -> None:
        super().__init__(message)
        self.skipped = skipped  # not sent at all: the connection's circuit is open (its fallback answers)
        self.kind = kind
        self.message = message
        self.status = status
        self.body = body
        self.retry_after = retry_after

    @property
    def summary(self) -> str:
        return error_summary(self.kind.label, self.message)

    @property
    def permanent(self) -> bool:
        return self.kind not in TRANSIENT_KINDS

    @property
    def help(self) -> Help:
        return explain(self.kind, self.status, self.message)

    def __str__(self) -> str:
        prefix = f"{self.kind.label}" + (f" (HTTP {self.status})" if self.status else "")
        return f"{prefix}: {self.message}"
