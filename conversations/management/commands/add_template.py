from __future__ import annotations

from django.core.management.base import BaseCommand

from conversations.models import PromptTemplate


class Command(BaseCommand):
    help = "Create a prompt template, or update the one with this name. Use {{name}} for placeholders."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--system", default="", help="The system prompt.")
        parser.add_argument(
            "--user", default="{{customer_message}}", help="The user message (default: exactly {{customer_message}})."
        )

    def handle(self, *args, name: str, system: str, user: str, **options):
        template, created = PromptTemplate.objects.update_or_create(
            name=name, defaults={"system_prompt": system, "user_message": user}
        )
        placeholders = ", ".join(f"{{{{{p}}}}}" for p in template.placeholders) or "none"
        self.stdout.write(f"{'Created' if created else 'Updated'} template {name!r}; placeholders: {placeholders}.")
