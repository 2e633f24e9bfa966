"""`{{variable}}` placeholders in prompt templates.

Rendering is one pass of one regular expression: a value is inserted as it is and never read again, so a
customer who types `{{business_name}}` gets those characters back, not our business name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

PLACEHOLDER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
PLACEHOLDER = re.compile(r"\{\{\s*(" + PLACEHOLDER_NAME.pattern + r")\s*\}\}")
CUSTOMER_MESSAGE = "customer_message"


class TemplateVariableError(ValueError):
    """A template cannot be rendered with the given variables; the message names the variable and the fix."""


def placeholders(*texts: str) -> list[str]:
    """The distinct placeholder names in the texts, in order of first appearance."""
    seen: dict[str, None] = {}
    for text in texts:
        for match in PLACEHOLDER.finditer(text):
            seen.setdefault(match.group(1), None)
    return list(seen)


def render(text: str, variables: Mapping[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: str(variables[m.group(1)]), text)


def check_variables(template_name: str, names: Iterable[str], variables: Mapping[str, str]) -> None:
    """Refuse a missing or an unknown variable before anything is rendered or sent."""
    names = list(names)
    missing = [n for n in names if n not in variables or str(variables[n]).strip() == ""]
    if missing:
        listed = ", ".join(f"{{{{{n}}}}}" for n in missing)
        raise TemplateVariableError(
            f"Template {template_name!r} needs a value for {listed}. Fill in "
            f"{'that field' if len(missing) == 1 else 'those fields'} and send again."
        )
    unknown = [n for n in variables if n not in names and n != CUSTOMER_MESSAGE]
    if unknown:
        listed = ", ".join(repr(n) for n in unknown)
        raise TemplateVariableError(
            f"Template {template_name!r} has no placeholder for {listed}. Remove "
            f"{'that variable' if len(unknown) == 1 else 'those variables'}, or add "
            f"{', '.join(f'{{{{{n}}}}}' for n in unknown)} to the template."
        )
