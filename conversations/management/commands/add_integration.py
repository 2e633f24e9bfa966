from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from connectors.models import ProviderConnection
from connectors.safety import url_save_check
from conversations.api.tokens import integration_create
from conversations.models import Integration, PromptTemplate


class Command(BaseCommand):
    help = (
        "Create an integration for a chatbot platform and print its API token (shown this once; only a hash is "
        "kept). The first --connection is its default."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--template", action="append", default=[], help="A template it may use; repeat.")
        parser.add_argument("--connection", action="append", default=[], help="A connection it may use; repeat.")
        parser.add_argument("--callback-url", default="", help="Where to POST each final reply (signed).")

    def handle(self, *args, name: str, template: list[str], connection: list[str], callback_url: str, **options):
        if Integration.objects.filter(name=name).exists():
            raise CommandError(
                f"An integration named {name!r} exists, and its token was shown only once. For a new token, rotate "
                "it: Integrations → the integration → Rotate the token (the old one stops working at once)."
            )
        if callback_url:
            problem, warning = url_save_check(callback_url, "https://chatbot.example.com/switchboard-callback")
            if problem:
                raise CommandError(f"--callback-url: {problem}")
            if warning:
                self.stderr.write(f"Warning: {warning}")
        if not connection:
            known = ", ".join(ProviderConnection.objects.values_list("name", flat=True)[:10]) or "none yet"
            raise CommandError(
                "--connection is required: an integration without a connection cannot send anything. "
                f"Name one or more (known: {known})."
            )
        if not template:
            self.stderr.write(
                "Warning: no --template, so POST /api/v1/messages refuses its requests; only "
                "/api/v1/chat/completions works. Add templates in the dashboard (Integrations) when you need them."
            )
        templates = [_get(PromptTemplate, t, "template") for t in template]
        connections = [_get(ProviderConnection, c, "connection") for c in connection]
        integration, token = integration_create(
            name=name, templates=templates, connections=connections, callback_url=callback_url
        )
        self.stdout.write(f"Created integration {name!r}.")
        if callback_url:
            from connectors import crypto

            self.stdout.write(f"Callback signing secret: {crypto.decrypt(integration.callback_secret_encrypted)}")
        # The token last, on a line of its own, whatever else is printed: scripts take it with `tail -n 1`.
        self.stdout.write(f"Its token (shown only now):\n{token}")


def _get(model, name: str, what: str):
    found = model.objects.filter(name=name).first()
    if found is None:
        known = ", ".join(model.objects.values_list("name", flat=True)[:10]) or "none yet"
        raise CommandError(f"No {what} named {name!r} (known: {known}).")
    return found
