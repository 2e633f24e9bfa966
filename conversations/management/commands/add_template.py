from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

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
        template = PromptTemplate.objects.filter(name=name).first() or PromptTemplate(name=name)
        created = template.pk is None
        template.system_prompt, template.user_message = system, user
        try:
            template.full_clean()
        except ValidationError as error:
            problems = [f"{field.replace('_', ' ')}: {m}" for field, ms in error.message_dict.items() for m in ms]
            raise CommandError(f"Template {name!r} was not saved. " + " ".join(problems)) from None
        template.save()
        placeholders = ", ".join(f"{{{{{p}}}}}" for p in template.placeholders) or "none"
        self.stdout.write(f"{'Created' if created else 'Updated'} template {name!r}; placeholders: {placeholders}.")
