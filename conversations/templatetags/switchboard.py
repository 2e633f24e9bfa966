from __future__ import annotations

import json

from django import template

register = template.Library()


@register.filter
def pretty_json(value: object) -> str:
    """A value (or a JSON string) as indented JSON; text that is not JSON comes back unchanged."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)
