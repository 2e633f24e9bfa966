from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from connectors.crypto import SecretUnreadable
from connectors.http import api_key_problem
from connectors.models import ProviderConnection, decrypted_api_key
from connectors.providers.anthropic import VERSIONS
from connectors.providers.presets import PRESETS
from connectors.safety import url_save_check


class Command(BaseCommand):
    help = "Create a provider connection, or update the one with this name. The key is stored encrypted."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument(
            "--provider",
            default="mistral",
            choices=list(PRESETS),
            help="mistral (default), openai or anthropic, or a preset that fills the base URL and model: "
            + ", ".join(key for key in PRESETS if key not in ("mistral", "openai", "anthropic"))
            + ".",
        )
        parser.add_argument("--base-url", default=None, help="API root (default: the provider's).")
        parser.add_argument("--api-key", required=True, help="The provider's API key.")
        parser.add_argument("--model", default=None, help="Model to ask (default: the provider's).")
        parser.add_argument("--api-version", default="", choices=["", *VERSIONS], help="Anthropic's API version.")
        parser.add_argument("--free", action="store_true", help="A local model: its calls cost nothing.")
        parser.add_argument(
            "--fallback", default=None, help="The connection that answers when this one fails for good ('' for none)."
        )
        parser.add_argument("--max-tokens", type=int, default=None)
        parser.add_argument("--temperature", type=float, default=None)
        parser.add_argument("--timeout", type=float, default=30.0, help="Seconds to wait for a reply (default 30).")

    def handle(self, *args, name: str, api_key: str, **options):
        connection = ProviderConnection.objects.filter(name=name).first() or ProviderConnection(name=name)
        created = connection.pk is None
        preset = PRESETS[options["provider"]]
        connection.provider = preset.provider
        connection.base_url = options["base_url"] or preset.base_url
        connection.model = options["model"] or preset.model
        if not connection.model:
            raise CommandError(f"{preset.label} needs --model: the name of the model it serves. {preset.note}")
        connection.api_version = options["api_version"]
        if options["fallback"] is not None:
            fallback = ProviderConnection.objects.filter(name=options["fallback"]).first()
            if options["fallback"] and fallback is None:
                raise CommandError(f"--fallback: there is no connection named {options['fallback']!r}.")
            connection.fallback = fallback
        connection.free = options["free"] or preset.free
        connection.max_tokens = options["max_tokens"]
        connection.temperature = options["temperature"]
        connection.timeout_seconds = options["timeout"]
        if created or not _same_key(connection, api_key):
            problem = api_key_problem(api_key.strip())
            if problem:
                raise CommandError(problem)
            connection.set_api_key(api_key)
        try:
            connection.full_clean()
        except ValidationError as error:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
            raise CommandError(problems) from None
        connection.save()
        _, warning = url_save_check(connection.base_url)
        if warning:
            self.stderr.write(f"Warning: {warning}")
        verb = "Created" if created else "Updated"
        self.stdout.write(
            f"{verb} connection {name!r}: {connection.base_url}, model {connection.model}, key {connection.key_hint}."
        )


def _same_key(connection: ProviderConnection, api_key: str) -> bool:
    try:
        return decrypted_api_key(connection) == api_key.strip()
    except SecretUnreadable:
        return False
