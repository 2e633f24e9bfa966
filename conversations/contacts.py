"""Who a customer is, written one way: phone numbers in E.164 (`+15550100100`), anything else as it came.

WhatsApp gives a customer's number as digits without the `+` (its wa_id); platforms send `+1 650-555-0100`
or `+16505550100`. Stored alike, one customer is one contact, and a search for `+1555` finds them all. An
API user id, the test console's "test console", or a WhatsApp username's scoped id are not numbers and are
kept as they are.
"""

from __future__ import annotations

import re
import unicodedata

from config.names import unprintable

_SEPARATORS = re.compile(r"[\s().\-]")
# Marks that phones and chat apps wrap around a copied number to keep its direction: taken off the ends, where
# they are invisible packaging; anywhere else they are refused like any invisible character.
_DIRECTION_MARKS = "\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_E164 = re.compile(r"\+?[1-9][0-9]{5,14}")


def contact_from_whatsapp(wa_id: str) -> str:
    """A wa_id (digits) as E.164; a scoped username id stays as it is."""
    return f"+{wa_id}" if wa_id.isascii() and wa_id.isdigit() else wa_id


def whatsapp_recipient(contact: str) -> str:
    """What the Graph API's `to` takes: the wa_id, digits without the `+`."""
    return contact[1:] if contact.startswith("+") and contact[1:].isdigit() else contact


class ContactRefused(ValueError):
    """A contact that cannot name one customer the same way everywhere."""


class NotInternational(ContactRefused):
    """A phone number written without its country code: which customer it is cannot be known."""


def _ascii_digits(text: str) -> str:
    """`text` with every decimal digit in ASCII: a full-width ５ or an Arabic-Indic ٥ is the same 5."""
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)


def contact_from_api(contact: str) -> str:
    """A number written with a `+` (spaces, dashes, dots, brackets allowed) as E.164; anything else as it came,
    less the spaces and direction marks around it.

    A number formatted as people write them but without a `+` (`(650) 555-0100`, `650 555 0100`) is refused:
    stored as it is, it would never meet the same customer's WhatsApp conversation or a search for `+1650`.
    Bare digits stay as they are: platforms use numeric user ids, and a WhatsApp wa_id has no `+` either.
    """
    stripped = contact.strip().strip(_DIRECTION_MARKS)
    problem = unprintable(stripped)
    if problem:
        raise ContactRefused(
            f"The contact holds {problem}: it would show as another customer's, or not at all. Send the number or "
            "id without it."
        )
    # Full-width signs and digits, and other scripts' digits, are the same number: compared in ASCII.
    normalized = _ascii_digits(unicodedata.normalize("NFKC", stripped))
    compact = _SEPARATORS.sub("", normalized)
    if compact.startswith("+"):
        if _E164.fullmatch(compact):
            return compact
        raise ContactRefused(
            f"{stripped!r} starts with + but is not a phone number in international form: + and the country code "
            "and number, 6 to 15 digits (e.g. +16505550100). Without the +, any other id is taken as it is."
        )
    if compact != normalized and compact.isascii() and compact.isdigit() and len(compact) >= 7:
        raise NotInternational(
            f"{stripped!r} looks like a phone number without its country code. Write it in international form, "
            f"with + and the country code (e.g. +1 {stripped} in the US), so it is the same customer everywhere."
        )
    if normalized.isascii() and normalized.isdigit():
        return normalized  # bare digits (a platform's numeric id, a wa_id), in any script, are one id
    return stripped


def contact_prefixes(query: str) -> list[str]:
    """What a "contact starts with" search matches: the text as typed, and the E.164 form of a number typed
    with or without its `+` and separators."""
    prefixes = [query]
    compact = _SEPARATORS.sub("", query.strip())
    digits = compact.removeprefix("+")
    if digits.isascii() and digits.isdigit() and len(digits) >= 2:
        prefixes.append(f"+{digits}")
    return list(dict.fromkeys(prefixes))
