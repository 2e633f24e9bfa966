from __future__ import annotations

import secrets

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from connectors import crypto
from connectors.models import ProviderConnection
from connectors.safety import root_url_problem, url_save_check
from conversations.models import PromptTemplate, WhatsAppChannel


class Command(BaseCommand):
    help = (
        "Create or update a WhatsApp channel (one business number): Meta's app secret and access token are "
        "stored encrypted; prints the webhook path and verify token to enter in Meta's dashboard."
    )

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--phone-number-id", required=True)
        parser.add_argument("--app-secret", required=True, help="The Meta app's secret (signs webhooks).")
        parser.add_argument("--access-token", required=True, help="A system-user token allowed to send messages.")
        parser.add_argument("--template", required=True)
        parser.add_argument("--connection", required=True)
        parser.add_argument("--var", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--verify-token", default="", help="Default: a new random one.")
        parser.add_argument("--graph-base-url", default="https://graph.facebook.com")
        parser.add_argument("--graph-version", default="v23.0")
        parser.add_argument(
            "--burst-seconds",
            type=float,
            default=None,
            help="Messages within this many seconds of each other get one answer (default 2, at most 10; 0: off).",
        )

    def handle(self, *args, name: str, **o):
        template = PromptTemplate.objects.filter(name=o["template"]).first()
        connection = ProviderConnection.objects.filter(name=o["connection"]).first()
        if template is None or connection is None:
            raise CommandError(f"Unknown template {o['template']!r} or connection {o['connection']!r}.")
        problem, warning = url_save_check(o["graph_base_url"], "https://graph.facebook.com")
        problem = problem or root_url_problem(o["graph_base_url"], "https://graph.facebook.com")
        if problem:
            raise CommandError(f"--graph-base-url: {problem}")
        if warning:
            self.stderr.write(f"Warning: {warning}")
        variables = dict(pair.partition("=")[::2] for pair in o["var"])
        channel = WhatsAppChannel.objects.filter(name=name).first() or WhatsAppChannel(name=name)
        channel.phone_number_id = o["phone_number_id"]
        channel.verify_token = o["verify_token"] or channel.verify_token or secrets.token_urlsafe(24)
        channel.app_secret_encrypted = crypto.encrypt(o["app_secret"])
        channel.access_token_encrypted = crypto.encrypt(o["access_token"])
        channel.template, channel.connection, channel.variables = template, connection, variables
        channel.graph_base_url, channel.graph_version = o["graph_base_url"], o["graph_version"]
        if o["burst_seconds"] is not None:
            if not 0 <= o["burst_seconds"] <= 10:
                raise CommandError("--burst-seconds is from 0 (off) to 10.")
            channel.burst_seconds = o["burst_seconds"]
        channel.save()
        path = f"/whatsapp/{channel.pk}/webhook/"
        where = (
            f"{settings.PUBLIC_URL}{path}"
            if settings.PUBLIC_URL
            else f"{path} on this site's public https address (set PUBLIC_URL to have it printed whole)"
        )
        self.stdout.write(
            f"Saved WhatsApp channel {name!r}. In Meta's app dashboard (WhatsApp → Configuration), set the callback "
            f"URL to {where} and the verify token to {channel.verify_token}"
        )
