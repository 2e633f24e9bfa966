"""What staff do with a connection besides editing it: check that it works."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .crypto import SecretUnreadable
from .errors import ErrorKind, Help, ProviderError
from .models import ProviderConnection, decrypted_api_key
from .providers import adapter_for
from .safety import check_reachable


@dataclass
class CheckResult:
    ok: bool
    latency_ms: int | None = None
    models: list[str] = field(default_factory=list)
    reply: str = ""
    error: ProviderError | None = None
    step: str = ""

    @property
    def help(self) -> Help | None:
        return self.error.help if self.error else None


@sensitive_variables("api_key")
def connection_check(*, connection: ProviderConnection) -> CheckResult:
    """List the provider's models, then make a one-token chat; record and return what happened.

    Runs in the web request on purpose: it is one short call that staff wait for, with the connection's
    own timeout capped at 15 s.
    """
    timeout = min(connection.timeout_seconds, 15.0)
    result = CheckResult(ok=False)
    adapter = adapter_for(connection)
    try:
        check_reachable(connection.base_url)
        api_key = decrypted_api_key(connection)
        if not api_key:
            raise ProviderError(ErrorKind.CONFIG, "The connection has no API key. Enter one and save.")
        result.step = "listing models"
        try:
            result.models = adapter.models(api_key=api_key, timeout=timeout)
        except ProviderError as error:
            if error.status != 404:  # some OpenAI-compatible servers have no /models: the chat still decides
                raise
        result.step = "one-token chat"
        body = adapter.body(model=connection.model, messages=[{"role": "user", "content": "ping"}], max_tokens=1)
        started = time.monotonic()
        reply = adapter.chat(api_key=api_key, body=body, timeout=timeout)
        result.latency_ms = round((time.monotonic() - started) * 1000)
        result.reply, result.ok = reply.content, True
    except SecretUnreadable as error:
        result.error = ProviderError(ErrorKind.CONFIG, str(error))
    except ProviderError as error:
        result.error = error
    connection.checked_at = timezone.now()
    connection.check_ok = result.ok
    connection.check_message = f"OK in {result.latency_ms} ms" if result.ok else result.error.summary
    if result.models:
        connection.available_models = result.models
    # An update, not a save: a check changes nothing staff configured, so it is no entry in the history (a save
    # would record one, signed by whoever clicked, Support staff included).
    ProviderConnection.objects.filter(pk=connection.pk).update(
        checked_at=connection.checked_at,
        check_ok=connection.check_ok,
        check_message=connection.check_message,
        available_models=connection.available_models,
    )
    return result
