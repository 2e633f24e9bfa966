"""The cost of a call from the editable price list, cached briefly so the worker does not ask per call."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from config.errors import service_unavailable
from connectors.chat_completions import ChatReply
from connectors.models import ModelPrice, ProviderConnection

CACHE_SECONDS = 60.0
_lock = threading.Lock()
_cache: dict[str, ModelPrice] = {}
_loaded_at = 0.0


def cost(model: str, prompt_tokens: int | None, completion_tokens: int | None) -> Decimal | None:
    """USD for the tokens at the model's price, or None when the model has no price."""
    price = _prices().get(model)
    return price.cost(prompt_tokens, completion_tokens) if price else None


def call_cost(connection: ProviderConnection, requested: str, reply: ChatReply) -> Decimal | None:
    """What a call cost: nothing on a free connection (a local model, whatever it is called); else the price
    of the model the provider says answered, or of the model asked for when that one has no price."""
    if connection.free:
        return Decimal(0)
    answered = reply.model if reply.model in _prices() else requested
    return cost(answered, reply.prompt_tokens, reply.completion_tokens)


def warm() -> None:
    """Read the price list now if it is due (a worker calls this before a provider request, when the database
    is known to answer, so that pricing the reply reads nothing)."""
    _prices()


def _prices() -> dict[str, ModelPrice]:
    global _cache, _loaded_at
    with _lock:
        if time.monotonic() - _loaded_at > CACHE_SECONDS:
            try:
                _cache = {price.model: price for price in ModelPrice.objects.all()}
            except Exception as error:
                # Pricing a reply already received must not fail on a database that blinks: the last list read
                # serves (prices change a few times a year); read again on the next call.
                if not service_unavailable(error) or not _cache:
                    raise
                return _cache
            _loaded_at = time.monotonic()
        return _cache


def forget() -> None:
    """Drop the cache (after prices change in the admin, and in tests)."""
    global _loaded_at
    with _lock:
        _loaded_at = 0.0
