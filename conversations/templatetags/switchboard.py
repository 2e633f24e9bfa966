from __future__ import annotations

import json

from django import template
from django.urls import reverse
from django.utils.html import format_html

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


@register.simple_tag(takes_context=True)
def nav(context, url_name: str, label: str, exact: bool = False) -> str:
    """A navigation link, marked as the current page when the address is this page (or under it)."""
    url = reverse(url_name)
    path = context["request"].path
    current = path == url if exact else path.startswith(url)
    if current:
        return format_html('<a href="{}" aria-current="page">{}</a>', url, label)
    return format_html('<a href="{}">{}</a>', url, label)
