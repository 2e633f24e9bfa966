"""What a name staff give a thing (a connection, a template, an integration, a channel) may hold.

Names are shown on every page, sent in API answers and typed into API requests (`"connection": "Mistral"`).
A control character or an invisible formatting character in one (a right-to-left override that makes
"lartsiM" read "Mistral", a zero-width space) makes two names look the same while they differ, and a name
nobody can type. Letters, digits, punctuation, symbols (emoji included) and single spaces are what a name
needs.
"""

from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

# Unicode categories refused: controls (Cc: tab, newline, NUL, ...), formatting (Cf: bidi overrides,
# zero-width spaces), line and paragraph separators, private use, surrogates and unassigned code points.
_REFUSED = {
    "Cc": "a control character",
    "Cf": "an invisible formatting character",
    "Zl": "a line separator",
    "Zp": "a paragraph separator",
    "Co": "a private-use character",
    "Cs": "a lone surrogate",
    "Cn": "an unassigned code point",
}
_ZERO_WIDTH_JOINER = "\u200d"  # part of many emoji (👩‍💻); harmless between visible characters
# Letters that render as nothing at all (Hangul fillers, the blank Braille pattern): a name of them looks empty.
_BLANK_LOOKING = {"\u115f", "\u1160", "\u3164", "\uffa0", "\u2800"}


def unprintable(value: str) -> str | None:
    """The first control or invisible character in `value`, described ("an invisible formatting character
    (U+202E) at position 1"), or None."""
    for position, char in enumerate(value, start=1):
        kind = _REFUSED.get(unicodedata.category(char))
        if kind and char != _ZERO_WIDTH_JOINER:
            return f"{kind} (U+{ord(char):04X}) at position {position}"
    return None


# In longer text (a prompt, a reply) formatting characters have uses (joiners, right-to-left marks): only
# controls and the two bidi overrides, which make what follows read reversed, are refused there.
_TEXT_REFUSED = {"\u202d": "a left-to-right override", "\u202e": "a right-to-left override"}


def hidden_in_text(value: str) -> str | None:
    """The first character in a text (not a name) that changes how it reads without being seen: a control
    character other than tab and line breaks, or a bidi override; described as `unprintable` does, or None."""
    for position, char in enumerate(value, start=1):
        if char in _TEXT_REFUSED:
            return f"{_TEXT_REFUSED[char]} (U+{ord(char):04X}) at position {position}"
        if unicodedata.category(char) == "Cc" and char not in "\t\n\r":
            return f"a control character (U+{ord(char):04X}) at position {position}"
    return None


def validate_name(value: str) -> None:
    problem = unprintable(value)
    if problem:
        raise ValidationError(
            f"The name holds {problem}, which would make it look like another name or impossible to type. Use "
            "letters, digits, spaces and punctuation.",
            code="unprintable",
        )
    for position, char in enumerate(value, start=1):
        if char in _BLANK_LOOKING or (unicodedata.category(char) == "Zs" and char != " "):
            raise ValidationError(
                f"The name holds U+{ord(char):04X} at position {position}, a character that looks like a space or "
                "like nothing: two names would look the same. Use plain spaces.",
                code="look_alike",
            )
    if "  " in value or value != value.strip():
        raise ValidationError(
            "The name has spaces at an end or two in a row, so it would look like a name it is not. Use single "
            "spaces between words.",
            code="spaces",
        )
    visible = [c for c in value if not c.isspace() and c != _ZERO_WIDTH_JOINER]
    if value and not visible:
        raise ValidationError("The name has nothing visible; give it a name people can read.", code="blank")
