from __future__ import annotations

import io
import os
import re
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from connectors.models import ProviderConnection
from conversations.models import PromptTemplate, WhatsAppChannel
from conversations.roles import SUPPORT_STAFF

DEMO_USER = "admin"
DEMO_AGENT = "agent"  # a Support staff login, to see the dashboard as the support team does
DEMO_PASSWORD = "switchboard-demo"
DEMO_SYSTEM = (
    "You are a helpful support assistant for {{business_name}} on WhatsApp. Answer briefly and kindly. "
    "Opening hours: {{opening_hours}}."
)
LOCAL_SANDBOX = re.compile(r"http://127\.0\.0\.1:\d+(/v1)?")  # what this command points the demo rows at


class Command(BaseCommand):
    help = "For local development (DEBUG only): a demo admin, a 'Sandbox' connection and a demo template."

    def handle(self, *args, **options):
        if not settings.DEBUG:
            raise CommandError("seed_demo creates a known password, so it only runs with DEBUG=true.")
        port = os.environ.get("WEB_PORT", "8000")  # where make run serves the dashboard
        if port == str(settings.SANDBOX_PORT):
            raise CommandError(
                f"WEB_PORT and SANDBOX_PORT are both {port}: the dashboard and the sandbox provider need a port "
                "each. Give one of them another, e.g. WEB_PORT=8300 make run."
            )
        User = get_user_model()
        if not User.objects.filter(username=DEMO_USER).exists():
            User.objects.create_superuser(DEMO_USER, "admin@example.com", DEMO_PASSWORD)
        if not User.objects.filter(username=DEMO_AGENT).exists():
            agent = User.objects.create_user(DEMO_AGENT, "agent@example.com", DEMO_PASSWORD)
            agent.groups.add(Group.objects.get(name=SUPPORT_STAFF))
        if not ProviderConnection.objects.filter(name="Sandbox").exists():
            call_command(
                "add_connection",
                "Sandbox",
                base_url=f"http://127.0.0.1:{settings.SANDBOX_PORT}/v1",
                api_key="sandbox-demo-key",
                model="mistral-small-latest",
                stdout=self.stdout,
            )
        self._follow_the_sandbox()
        if not PromptTemplate.objects.filter(name="Support bot").exists():
            call_command("add_template", "Support bot", system=DEMO_SYSTEM, stdout=self.stdout)
        if not WhatsAppChannel.objects.filter(name="Demo WhatsApp").exists():
            # Meta's Graph API is the sandbox here too: replies land in its outbox, shown by the simulator.
            call_command(
                "add_whatsapp_channel",
                "Demo WhatsApp",
                phone_number_id="106540352242922",
                app_secret=secrets.token_hex(24),  # never a leading "-", which call_command would read as a flag
                access_token="sandbox-whatsapp-token",
                template="Support bot",
                connection="Sandbox",
                var=["business_name=Acme Bikes", "opening_hours=9-17"],
                graph_base_url=f"http://127.0.0.1:{settings.SANDBOX_PORT}",
                stdout=io.StringIO(),  # its Meta set-up lines do not apply: the sandbox plays Meta here
            )
            channel = WhatsAppChannel.objects.get(name="Demo WhatsApp")
            self.stdout.write(
                "Created WhatsApp channel 'Demo WhatsApp' on the sandbox: chat as a customer at "
                f"http://127.0.0.1:{port}/whatsapp/{channel.pk}/simulator/"
            )
        self.stdout.write(
            f"Dashboard: http://127.0.0.1:{port}/  logins: {DEMO_USER} (Admin) and {DEMO_AGENT} (Support staff), "
            f"password {DEMO_PASSWORD} (local demo only; change with `python manage.py changepassword NAME`)."
        )

    def _follow_the_sandbox(self) -> None:
        """The demo rows made on an earlier run keep the sandbox's port of that run: with another SANDBOX_PORT
        now, the Sandbox connection (and the demo channel) would call whatever listens on the old one. Said, not
        changed: a local address on another port may be a server someone pointed the row at (Ollama's is
        http://127.0.0.1:11434/v1)."""
        sandbox = f"http://127.0.0.1:{settings.SANDBOX_PORT}"
        rows = [
            (ProviderConnection.objects.filter(name="Sandbox").first(), "base_url", f"{sandbox}/v1", "Connection"),
            (WhatsAppChannel.objects.filter(name="Demo WhatsApp").first(), "graph_base_url", sandbox, "Channel"),
        ]
        for row, field, expected, kind in rows:
            url = getattr(row, field, "")
            if row is not None and LOCAL_SANDBOX.fullmatch(url) and url != expected:
                self.stdout.write(
                    f"{kind} '{row.name}' calls {url}, but this run's sandbox is at {expected} (SANDBOX_PORT). "
                    "If it should call the sandbox, set that address on its page."
                )
