"""Saving and publishing template versions.

- Every save of a template's text makes a new immutable version; saving the same text again makes none.
- A template's first version is published at once; later ones are drafts until published.
- Publishing copies the version's text into the template (what the console, the API and the channels
  render), after checking it against every channel that uses the template: a variable a channel does not
  supply would fail every customer message there, so it blocks publishing and names the channel.
- Rolling back is publishing an older version.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from .. import rendering
from ..models import PromptTemplate, TemplateVersion, WhatsAppChannel


class PublishRefused(ValueError):
    """Publishing would break something; the message says what and how to fix it. From `template_save`,
    `saved` says what was kept (a new draft version, or none: the text was the newest version's already)."""

    saved: Saved | None = None


@dataclass
class Saved:
    template: PromptTemplate
    version: TemplateVersion
    created: bool  # a new template
    new_version: bool  # False when the text was the same as the newest version's
    published: bool


def template_save(
    *,
    name: str,
    system_prompt: str,
    user_message: str,
    template: PromptTemplate | None = None,
    by=None,
    publish: bool = False,
) -> Saved:
    """Create a template (version 1, published) or add a version to one (a draft unless `publish`).

    Raises ValidationError for text that would be sent wrongly, PublishRefused when publishing would break a
    channel (the version is kept as a draft then)."""
    problems = rendering.text_problems(system_prompt, user_message)
    if problems:
        raise ValidationError(problems)
    with transaction.atomic():
        created = template is None
        if created:
            template = PromptTemplate(name=name, system_prompt=system_prompt, user_message=user_message)
            template.full_clean()
            template.save()
        elif template.name != name:
            template.name = name
            template.full_clean(exclude=["system_prompt", "user_message"])
            template.save(update_fields=["name", "updated_at"])
        newest = template.versions.order_by("-number").first()
        if newest and (newest.system_prompt, newest.user_message) == (system_prompt, user_message):
            version, new_version = newest, False
        else:
            version = TemplateVersion.objects.create(
                template=template,
                number=(newest.number + 1) if newest else 1,
                system_prompt=system_prompt,
                user_message=user_message,
                changes=describe_changes(newest, system_prompt, user_message),
                created_by=by,
            )
            new_version = True
    published = False
    if created or publish or template.published_id is None:  # a first version is published at once
        try:
            version_publish(version=version, by=by)
        except PublishRefused as refused:
            refused.saved = Saved(template, version, created, new_version, published=False)
            raise
        published = True
    return Saved(template, version, created, new_version, published)


def describe_changes(before: TemplateVersion | None, system_prompt: str, user_message: str) -> str:
    if before is None:
        return "First version"
    parts = []
    for label, old, new in [
        ("system prompt", before.system_prompt, system_prompt),
        ("user message", before.user_message, user_message),
    ]:
        if old == new:
            continue
        added = removed = 0
        for line in difflib.ndiff(old.splitlines(), new.splitlines()):
            added += line.startswith("+ ")
            removed += line.startswith("- ")
        parts.append(f"{label} +{added} −{removed} lines")
    return ("; ".join(parts) or "no change to the text").capitalize()


def missing_values(version: rendering.PromptText, variables: dict | None) -> list[str]:
    """The placeholders of `version` (or a template's own text) that `variables` (a channel's values) leave
    without a value, sorted."""
    return sorted(set(version.variables) - set(variables or {}))


def publish_problems(version: TemplateVersion) -> list[str]:
    """What publishing this version would break, each with its fix."""
    problems = []
    for channel in WhatsAppChannel.objects.filter(template_id=version.template_id).order_by("name"):
        missing = missing_values(version, channel.variables)
        if missing:
            listed = ", ".join(f"{{{{{name}}}}}" for name in missing)
            problems.append(
                f"WhatsApp channel {channel.name} supplies no value for {listed}, so every customer message "
                f"there would fail. Add it to the channel's Variables (Admin → WhatsApp channels → "
                f'{channel.name}, e.g. {{"{missing[0]}": "…"}}; or add_whatsapp_channel {channel.name!r} … '
                f"--var {missing[0]}=VALUE), or leave it out of the template."
            )
    template = version.template
    if template.required_test_set_id:
        from .testing import describe_case, passing_run

        test_set = template.required_test_set
        run, failed = passing_run(version, test_set)
        if run is None:
            problems.append(
                f"Publishing {template.name} needs a passing run of test set {test_set.name} on version "
                f"{version.number}, and there is none yet. Run it (Test sets → {test_set.name} → Run, or "
                f"run_test_set {test_set.name!r} --connection NAME --version {version.number})."
            )
        elif failed:
            cases = "; ".join(f"{describe_case(r.case)}: {', '.join(r.failures)}" for r in failed)
            problems.append(
                f"Test set {test_set.name} failed on version {version.number} (run {run.pk}): {len(failed)} "
                f"case{'s' if len(failed) != 1 else ''} failed: {cases}. Fix the template and run the set again."
            )
    return problems


def version_publish(*, version: TemplateVersion, by=None) -> None:
    """Make this version the one customers get, from their next message on."""
    problems = publish_problems(version)
    if problems:
        raise PublishRefused(" ".join(problems))
    with transaction.atomic():
        template = PromptTemplate.objects.select_for_update().get(pk=version.template_id)
        template.system_prompt, template.user_message = version.system_prompt, version.user_message
        template.published = version
        template._history_user = by  # simple_history: who published, in the template's history
        template.save()
        TemplateVersion.objects.filter(pk=version.pk).update(published_at=timezone.now())


def version_diff(older: TemplateVersion, newer: TemplateVersion) -> list[tuple[str, list[tuple[str, str]]]]:
    """Line by line, per field: ("same" | "added" | "removed", line)."""
    fields = []
    for label, field in [("System prompt", "system_prompt"), ("User message", "user_message")]:
        lines = []
        for line in difflib.ndiff(getattr(older, field).splitlines(), getattr(newer, field).splitlines()):
            tag = {"+ ": "added", "- ": "removed", "  ": "same"}.get(line[:2])
            if tag:
                lines.append((tag, line[2:]))
        fields.append((label, lines))
    return fields
