from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from conversations.models import PromptTemplate
from conversations.prompts.testing import TestSetRefused, case_add


class Command(BaseCommand):
    help = (
        "Add a case to a test set (made if new): the customer's message (repeat --message for several turns), "
        "the template's variables, and what the last reply must be."
    )

    def add_arguments(self, parser):
        parser.add_argument("set", help="The test set's name.")
        parser.add_argument("--template", required=True, help="The template the case is for.")
        parser.add_argument("--message", action="append", required=True, help="What the customer writes; repeat.")
        parser.add_argument("--var", action="append", default=[], help="A variable, NAME=VALUE; repeat.")
        parser.add_argument("--expect-contains", action="append", default=[], help="Text the reply contains.")
        parser.add_argument("--expect-not-contains", action="append", default=[], help="Text it must not contain.")
        parser.add_argument("--expect-regex", action="append", default=[], help="A regular expression it matches.")
        parser.add_argument("--max-chars", type=int, help="At most this many characters.")
        parser.add_argument("--no-markdown", action="store_true", help="No Markdown left after WhatsApp formatting.")

    def handle(self, *args, **o):
        template = PromptTemplate.objects.filter(name=o["template"]).first()
        if template is None:
            known = ", ".join(PromptTemplate.objects.values_list("name", flat=True)[:10]) or "none yet"
            raise CommandError(f"No template named {o['template']!r} (known: {known}).")
        bad = [pair for pair in o["var"] if "=" not in pair]
        if bad:
            raise CommandError(f"--var takes NAME=VALUE; {bad[0]!r} has no '='.")
        if o["max_chars"] is not None and o["max_chars"] < 1:
            raise CommandError("--max-chars is a number of characters, 1 or more.")
        try:
            case = case_add(
                set_name=o["set"],
                template=template,
                turns=o["message"],
                variables=dict(pair.split("=", 1) for pair in o["var"]),
                expect_contains=o["expect_contains"],
                expect_not_contains=o["expect_not_contains"],
                expect_regex=o["expect_regex"],
                max_chars=o["max_chars"],
                no_markdown=o["no_markdown"],
            )
        except TestSetRefused as refused:
            words = str(refused).replace("Fill in that field and send again.", "Give it with --var NAME=VALUE.")
            words = words.replace("Fill in those fields and send again.", "Give them with --var NAME=VALUE.")
            raise CommandError(words) from None
        count = case.test_set.cases.count()
        self.stdout.write(
            f"Added case {case.pk} to test set {case.test_set.name!r} ({count} case{'s' * (count != 1)})."
        )
