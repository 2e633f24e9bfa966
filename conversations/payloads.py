"""Untrusted input in: JSON decoded with limits, and text checked before the database sees it.

Guarantees, and how they are kept:
- Nothing an outsider sends makes a 500. JSON that is not JSON, nested past Python's recursion limit,
  holding numbers no field takes (hundreds of digits, `1e999`, `NaN`) is refused by `loads` with the
  field and the fix, never passed on.
- No text the database cannot store gets as far as a query. PostgreSQL refuses NUL characters and lone
  UTF-16 surrogates (`\\ud800`, valid in a JSON escape, not text) that SQLite would store; `loads`
  finds either anywhere in a body, keys included, and `unstorable` says what is wrong with one string.
  A body is decoded as strict UTF-8 first (JSON is UTF-8; Python's json would also take UTF-16 and UTF-8
  with encoded surrogates), so a surrogate or NUL can then only enter as a `\\u` escape, and a body
  without one is never walked: the common case costs one substring search.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from config.names import hidden_in_text

# No field takes a number this long; Python would refuse past 4,300 digits anyway, with a ValueError.
MAX_NUMBER_DIGITS = 20
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ESCAPES = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class PayloadError(ValueError):
    """Input refused before it was used: the field at fault (a dotted path) and what to send instead."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def unstorable(text: str) -> str | None:
    """Why a string cannot be stored as text (a NUL, a lone surrogate), or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000); remove it"
    found = _SURROGATE.search(text)
    if found:
        return (
            f"contains a lone UTF-16 surrogate (\\u{ord(found.group()):04x}), which is not a character; send UTF-8 text"
        )
    return None


def printable(text: str) -> str:
    """`text` with its NULs and lone surrogates written as escapes, safe to store and to show."""
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def check_text(value: str, field: str) -> str:
    problem = unstorable(value)
    if problem:
        raise PayloadError(field, f'"{field}" {problem}.')
    return value


def loads(raw: bytes, *, strict: bool = True) -> Any:
    """Decode a JSON body, or raise PayloadError naming the field (or "body") and the fix.

    `strict` refuses the whole body for one unstorable string or unusable number. Without it, only what
    makes the body unreadable is refused (not JSON, nested too deeply); odd numbers are kept as their text
    and the caller checks the parts it uses, so that a WhatsApp delivery refuses one bad message, not its
    neighbours.
    """
    refused: list[_Refused] = []
    hooks = _strict_hooks(refused) if strict else _LENIENT
    try:
        # Strict UTF-8 refuses encoded surrogates (ED A0 80) too; leniently, they become lone surrogates
        # in the strings they are in, which the caller's checks then find.
        text = raw.decode("utf-8") if strict else raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as error:
        raise PayloadError(
            "body", f"The body is not UTF-8 text (byte {error.start + 1}). Send JSON encoded as UTF-8."
        ) from None
    try:
        data = json.loads(text, **hooks)
    except RecursionError:
        raise PayloadError("body", "The JSON is nested too deeply to read; send a flat JSON object.") from None
    except ValueError as error:
        raise PayloadError("body", f"The body is not valid JSON ({error}). Send a JSON object.") from None
    if refused:
        path = _path_of(data, refused[0])
        raise PayloadError(path, f'"{path}": {refused[0].message}')
    if strict and _ESCAPES.search(text):
        found = first_unstorable(data)
        if found:
            field, problem = found
            raise PayloadError(field, f'"{field}" {problem}.')
    return data


def first_unstorable(data: Any) -> tuple[str, str] | None:
    """(dotted path, problem) of the first key or string in `data` that cannot be stored, or None."""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            problem = unstorable(value)
            if problem:
                return path or "body", problem
        elif isinstance(value, dict):
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                problem = unstorable(key)
                if problem:
                    return printable(child), f"is a key that {problem}"
                stack.append((child, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{n}]", item) for n, item in enumerate(value))
    return None


# Numbers past Python's own limit stay text, as do NaN and Infinity: nothing here computes with them.
_LENIENT = {"parse_int": lambda text: int(text) if len(text) <= 4000 else text, "parse_constant": str}


class _Refused:
    """Stands in, while decoding, for a number no field can take; `_path_of` then finds where it was, so
    the error names the field (`messages[2].max_tokens`), which the decoder's hooks cannot know."""

    def __init__(self, message: str):
        self.message = message


def _strict_hooks(refused: list[_Refused]) -> dict[str, Any]:
    def refuse(message: str) -> _Refused:
        marker = _Refused(message)
        refused.append(marker)
        return marker

    def parse_int(text: str) -> int | _Refused:
        digits = len(text.lstrip("-"))
        if digits > MAX_NUMBER_DIGITS:
            return refuse(
                f"a number with {digits} digits ({text[:12]}…); no field takes more than {MAX_NUMBER_DIGITS}. "
                "Send the number the field's documentation asks for."
            )
        return int(text)

    def parse_float(text: str) -> float | _Refused:
        value = float(text)
        if not math.isfinite(value):
            return refuse(f"the number {text[:24]} is too large to be a number here; send a finite value.")
        return value

    def parse_constant(name: str) -> _Refused:
        return refuse(f"{name} is not valid JSON; send a finite number.")

    return {"parse_int": parse_int, "parse_float": parse_float, "parse_constant": parse_constant}


def _path_of(data: Any, marker: _Refused) -> str:
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if value is marker:
            return path or "body"
        if isinstance(value, dict):
            stack.extend(
                (f"{path}.{printable(str(key))}" if path else printable(str(key)), item) for key, item in value.items()
            )
        elif isinstance(value, list):
            stack.extend((f"{path}[{n}]", item) for n, item in enumerate(value))
    return "body"


def validate_storable(value: Any) -> None:
    """A model field validator: refuse JSON holding text the database cannot store, naming where."""
    from django.core.exceptions import ValidationError

    found = first_unstorable(value)
    if found:
        raise ValidationError(f"{found[0]} {found[1]}.")


def validate_variables(value: Any) -> None:
    """A template's variables: an object of names to text, storable."""
    from django.core.exceptions import ValidationError

    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValidationError('Variables are an object of names to text, e.g. {"business_name": "Acme"}.')
    validate_storable(value)
    for name, text in value.items():
        hidden = hidden_in_text(text)
        if hidden:
            raise ValidationError(
                f"The value of {name} holds {hidden}, which nobody sees but a model reads; remove it."
            )
