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
        parser.add_argument(
            "--repeat", type=int, default=1, metavar="N", help="Queue N sends, each in its own conversation."
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
        repeat = options["repeat"]
        if repeat < 1:
            raise CommandError("--repeat must be 1 or more.")
        calls = []
        for n in range(repeat):
            try:
                call = services.call_send(
                    connection=connection,
                    template=template,
                    customer_message=options["message"],
                    variables=variables,
                    contact=options["contact"] if repeat == 1 else f"{options['contact']}-{n + 1}",
                )
            except (services.TemplateVariableError, services.SendRefused) as error:
                raise CommandError(str(error)) from None
            calls.append(call)
        if repeat == 1:
            self.stdout.write(f"Queued call {call.pk} in conversation {call.conversation_id}.")
        else:
            self.stdout.write(f"Queued {repeat} calls, {calls[0].pk} to {calls[-1].pk}.")
        if options["wait"] > 0:
            self._wait(calls, options["wait"])

    def _wait(self, calls: list[Call], seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            calls = [call.latest_attempt() for call in calls]  # follows retries
            if all(call.finished for call in calls) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        failures = [self._report(call, seconds) for call in calls]
        failures = [text for text in failures if text]
        if failures:
            raise CommandError("\n".join(failures))

    def _report(self, call: Call, seconds: float) -> str:
        """Print a reply; return the text of a failure."""
        if call.status == Call.Status.SUCCEEDED:
            self.stdout.write(call.reply_text)
            self.stdout.write(
                f"({call.latency_ms} ms, {call.prompt_tokens}+{call.completion_tokens} tokens, {call.finish_reason})"
            )
            return ""
        if call.status == Call.Status.FAILED:
            status = f" (HTTP {call.http_status})" if call.http_status else ""
            attempts = f" after {call.attempt} attempts" if call.attempt > 1 else ""
            return (
                f"{call.get_error_kind_display()}{status}{attempts}: {call.error_message}\n"
                f"Likely cause: {call.help.cause}\nFix: {call.help.fix}"
            )
        return (
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
