from __future__ import annotations

import json
import re

from django import template
from django.urls import reverse
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def waited(value) -> str:
    """How long something has waited, as a person says it: "under a minute" rather than "0 minutes"."""
    from django.utils import timezone
    from django.utils.timesince import timesince

    if value is None:
        return "—"
    if (timezone.now() - value).total_seconds() < 60:
        return "under a minute"
    return timesince(value)


@register.filter
def duration(value) -> str:
    from config.accounts import readable_duration

    return readable_duration(value)


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


_MARKS = [
    (re.compile(r"```(.+?)```", re.S), "<code>{}</code>"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), "<strong>{}</strong>"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), "<em>{}</em>"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"), "<s>{}</s>"),
]


@register.filter
def whatsapp_marks(text: str) -> str:
    """Text as WhatsApp shows it (for the simulated customer): *bold*, _italic_, ~struck~, ```monospace```,
    line breaks; everything escaped first."""
    html = escape(text)
    for pattern, wrap in _MARKS:
        html = pattern.sub(lambda m, wrap=wrap: wrap.format(m.group(1)), html)
    return mark_safe(html.replace("\n", "<br>"))  # noqa: S308 - built from escaped text
