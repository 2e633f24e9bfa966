from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from connectors.models import ProviderConnection
from conversations import services
from conversations.models import Call, PromptTemplate


class Command(BaseCommand):
    help = (
        "Queue a test send through a connection and template. With --wait, print the reply (exit 0) "
        "or the error kind, the provider's message and the fix (exit 1)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--connection", required=True, help="Connection name.")
        parser.add_argument("--template", required=True, help="Template name.")
        parser.add_argument(
            "--var", action="append", default=[], metavar="KEY=VALUE", help="A template variable; repeat for each."
        )
        parser.add_argument("--message", required=True, help="The customer's message.")
        parser.add_argument("--contact", default="send_test", help="Who the conversation is with.")
        parser.add_argument(
            "--wait", type=float, default=0, metavar="SECONDS", help="Wait up to this long for the call to finish."
        )

    def handle(self, *args, **options):
        connection = _get(ProviderConnection, options["connection"], "connection", "add_connection")
        template = _get(PromptTemplate, options["template"], "template", "add_template")
        variables = {}
        for pair in options["var"]:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise CommandError(f"--var {pair!r} is not KEY=VALUE, for example --var business_name=Acme.")
            variables[key] = value
        try:
            call = services.call_send(
                connection=connection,
                template=template,
                customer_message=options["message"],
                variables=variables,
                contact=options["contact"],
            )
        except (services.TemplateVariableError, services.SendRefused) as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Queued call {call.pk} in conversation {call.conversation_id}.")
        if options["wait"] > 0:
            self._wait(call, options["wait"])

    def _wait(self, call: Call, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            call.refresh_from_db()
            if call.finished:
                break
            time.sleep(0.1)
        if call.status == Call.Status.SUCCEEDED:
            self.stdout.write(call.reply_text)
            self.stdout.write(
                f"({call.latency_ms} ms, {call.prompt_tokens}+{call.completion_tokens} tokens, {call.finish_reason})"
            )
            return
        if call.status == Call.Status.FAILED:
            status = f" (HTTP {call.http_status})" if call.http_status else ""
            raise CommandError(
                f"{call.get_error_kind_display()}{status}: {call.error_message}\n"
                f"Likely cause: {call.help.cause}\nFix: {call.help.fix}"
            )
        raise CommandError(
            f"Call {call.pk} is still {call.status} after {seconds:g} s. Is a worker running "
            "(`celery -A config worker`) and is CELERY_BROKER_URL the same for it and for this command?"
        )


def _get(model, name: str, what: str, command: str):
    try:
        return model.objects.get(name=name)
    except model.DoesNotExist:
        known = ", ".join(model.objects.values_list("name", flat=True)[:10]) or "none yet"
        raise CommandError(
            f"No {what} named {name!r} (known: {known}). Create it with `manage.py {command}`."
        ) from None
