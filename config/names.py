"""What a name staff give a thing (a connection, a template, an integration, a channel) may hold.

Names are shown on every page, sent in API answers and typed into API requests (`"connection": "Mistral"`).
A control character or an invisible formatting character in one (a right-to-left override that makes
"lartsiM" read "Mistral", a zero-width space) makes two names look the same while they differ, and a name
nobody can type. Letters, digits, punctuation, symbols (emoji included) and single spaces are what a name
needs.
"""

from __future__ import annotations

import re
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


# In longer text (a prompt, a reply) a few formatting characters are the text's own: the joiners that shape
# Arabic, Indic scripts and emoji, the right-to-left and left-to-right marks, the Arabic letter mark and the
# soft hyphen. Every other one is refused there: the bidi embeddings, overrides and isolates that make text
# read in another order than it is stored ("Trojan Source"), zero-width spaces, byte-order marks, and the
# invisible tag characters that a model reads although no person sees them.
_TEXT_FORMATTING = {"\u00ad", "\u061c", "\u200c", "\u200d", "\u200e", "\u200f"}
_BIDI = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}


# A subdivision flag (England, Scotland, Wales) is the black flag and tag characters ending in the cancel tag:
# the one place tag characters are seen.
_FLAG = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f")


def hidden_in_text(value: str) -> str | None:
    """The first character in a text (not a name) that changes how it reads, or what a model reads, without
    being seen; described as `unprintable` does, or None. Tabs and line breaks are text."""
    value = _FLAG.sub(lambda flag: "f" * len(flag.group()), value)  # same length: positions stay right
    for position, char in enumerate(value, start=1):
        category = unicodedata.category(char)
        if char in _BIDI:
            kind = "a text-direction control"
        elif 0xE0000 <= ord(char) <= 0xE007F:
            kind = "an invisible tag character"  # a model reads it; nobody sees it
        elif category == "Cf" and char not in _TEXT_FORMATTING:
            kind = "an invisible formatting character"
        elif category == "Cc" and char not in "\t\n\r" or category in ("Co", "Cn", "Cs"):
            kind = _REFUSED[category]
        else:
            continue
        return f"{kind} (U+{ord(char):04X}) at position {position}"
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
