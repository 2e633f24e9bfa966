from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from conversations.models import PromptTemplate, TestSet
from conversations.prompts.services import PublishRefused, template_save


class Command(BaseCommand):
    help = (
        "Create a prompt template (its version 1, published), or add a version to the one with this name: a "
        "draft unless --publish. Use {{name}} for placeholders."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--system", default="", help="The system prompt.")
        parser.add_argument(
            "--user", default="{{customer_message}}", help="The user message (default: exactly {{customer_message}})."
        )
        parser.add_argument("--publish", action="store_true", help="Publish the new version at once.")
        parser.add_argument(
            "--require-test-set",
            metavar="SET",
            help="From now on, publish a version only after a run of this test set on it passed ('' lifts it).",
        )

    def handle(self, *args, name: str, system: str, user: str, publish: bool, require_test_set=None, **options):
        template = PromptTemplate.objects.filter(name=name).first()
        required = None
        if require_test_set:
            required = TestSet.objects.filter(name=require_test_set).first()
            if required is None:
                known = ", ".join(TestSet.objects.values_list("name", flat=True)[:10]) or "none yet"
                raise CommandError(f"No test set named {require_test_set!r} (known: {known}). Add it first.")
        try:
            saved = template_save(
                template=template, name=name, system_prompt=system, user_message=user, publish=publish
            )
        except ValidationError as error:
            problems = [f"{field.replace('_', ' ')}: {m}" for field, ms in error.message_dict.items() for m in ms]
            raise CommandError(f"Template {name!r} was not saved. " + " ".join(problems)) from None
        except PublishRefused as refused:
            raise CommandError(f"Saved as a draft, not published: {refused}") from None
        if require_test_set is not None:
            PromptTemplate.objects.filter(pk=saved.template.pk).update(required_test_set=required)
            self.stdout.write(
                f"Publishing {name!r} now needs a passing run of {required.name!r}."
                if required
                else f"Publishing {name!r} needs no test run any more."
            )
        number = saved.version.number
        placeholders = ", ".join(f"{{{{{p}}}}}" for p in saved.version.placeholders) or "none"
        if saved.created:
            said = f"Created template {name!r} (version 1, published)"
        elif not saved.new_version:
            said = f"Template {name!r} unchanged: version {number} has this text" + (
                ", now published" if saved.published else ""
            )
        elif saved.published:
            said = f"Published version {number} of {name!r}"
        else:
            said = (
                f"Added version {number} of {name!r} as a draft; customers still get version "
                f"{saved.template.published.number if saved.template.published else '—'}. "
                f"Publish it with: manage.py publish_template {name!r} {number}"
            )
        self.stdout.write(f"{said}; placeholders: {placeholders}.")
