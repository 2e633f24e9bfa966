from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from conversations.models import PromptTemplate
from conversations.prompts.services import PublishRefused, version_publish


class Command(BaseCommand):
    help = "Publish a version of a template (any version: publishing an older one rolls back)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("version", type=int, help="The version's number, as `add_template` printed it.")

    def handle(self, *args, name: str, version: int, **options):
        template = PromptTemplate.objects.filter(name=name).first()
        if template is None:
            known = ", ".join(PromptTemplate.objects.values_list("name", flat=True)[:10]) or "none yet"
            raise CommandError(f"No template named {name!r} (known: {known}).")
        chosen = template.versions.filter(number=version).first()
        if chosen is None:
            numbers = ", ".join(str(n) for n in template.versions.values_list("number", flat=True)) or "none"
            raise CommandError(f"{name!r} has no version {version} (its versions: {numbers}).")
        try:
            version_publish(version=chosen)
        except PublishRefused as refused:
            raise CommandError(f"Version {version} of {name!r} was not published. {refused}") from None
        self.stdout.write(f"Published version {version} of {name!r}: customers get it from their next message.")
