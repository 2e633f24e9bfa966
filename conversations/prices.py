"""The cost of a call from the editable price list, cached briefly so the worker does not ask per call."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

from connectors.models import ModelPrice

CACHE_SECONDS = 60.0
_lock = threading.Lock()
_cache: dict[str, ModelPrice] = {}
_loaded_at = 0.0


def cost(model: str, prompt_tokens: int | None, completion_tokens: int | None) -> Decimal | None:
    """USD for the tokens at the model's price, or None when the model has no price."""
    price = _prices().get(model)
    return price.cost(prompt_tokens, completion_tokens) if price else None


def _prices() -> dict[str, ModelPrice]:
    global _cache, _loaded_at
    with _lock:
        if time.monotonic() - _loaded_at > CACHE_SECONDS:
            _cache = {price.model: price for price in ModelPrice.objects.all()}
            _loaded_at = time.monotonic()
        return _cache


def forget() -> None:
    """Drop the cache (after prices change in the admin, and in tests)."""
    global _loaded_at
    with _lock:
        _loaded_at = 0.0
