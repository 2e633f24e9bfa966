"""Prompt template versions: every save is kept, one version is published.

A template's own `system_prompt` and `user_message` are always its published version's text (publishing
copies them), so everything that renders a template reads the published version without knowing of
versions; a draft changes nothing a customer sees until it is published.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from .. import rendering
from .log import PromptTemplate


class TemplateVersion(rendering.PromptText, models.Model):
    """One saved state of a template, never changed after it is made."""

    template = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    system_prompt = models.TextField(blank=True)
    user_message = models.TextField()
    changes = models.CharField(max_length=200, help_text="What this version changed, in words.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True, help_text="When it was last published.")

    class Meta:
        ordering = ["template", "-number"]
        constraints = [models.UniqueConstraint(fields=["template", "number"], name="template_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.template.name} v{self.number}"

    @property
    def prompt_name(self) -> str:
        return f"{self.template.name} v{self.number}"

    @property
    def is_published(self) -> bool:
        return self.template.published_id == self.pk
