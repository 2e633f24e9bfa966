from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from connectors.models import ProviderConnection
from conversations.models import TestResult, TestSet
from conversations.prompts.testing import TestSetRefused, run_advance, run_start


class Command(BaseCommand):
    help = (
        "Send every case of a test set through the worker on one connection and check each reply: a line per "
        "case, then 'N/M passed'. Exits 0 only when every case passed (for a deployment pipeline)."
    )

    def add_base_argument(self, parser, *args, **kwargs):
        if "--version" not in args:  # --version is the template version here, not Django's own
            super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("set", help="The test set's name.")
        parser.add_argument("--connection", required=True, help="The connection to run it on.")
        parser.add_argument("--version", type=int, help="The template version (default: the published one).")
        parser.add_argument("--wait", type=float, default=120, help="Seconds to wait for the replies (default 120).")

    def handle(self, *args, set: str, connection: str, version: int | None, wait: float, **options):
        test_set = TestSet.objects.filter(name=set).first()
        if test_set is None:
            known = ", ".join(TestSet.objects.values_list("name", flat=True)[:10]) or "none yet"
            raise CommandError(f"No test set named {set!r} (known: {known}).")
        chosen = ProviderConnection.objects.filter(name=connection).first()
        if chosen is None:
            known = ", ".join(ProviderConnection.objects.values_list("name", flat=True)[:10]) or "none yet"
            raise CommandError(f"No connection named {connection!r} (known: {known}).")
        try:
            run = run_start(test_set=test_set, connection=chosen, version_number=version)
        except TestSetRefused as refused:
            raise CommandError(str(refused)) from None
        on = f"version {run.version.number} of {run.version.template.name}" if run.version else "the published versions"
        self.stdout.write(f"Run {run.pk}: {test_set.name} on {chosen.name}, {on}.")
        deadline = time.monotonic() + max(0.0, wait)
        while run.status == run.Status.RUNNING and time.monotonic() < deadline:
            time.sleep(0.2)
            run = run_advance(run)
        results = list(run.results.select_related("case"))
        for n, result in enumerate(results, 1):
            asked = result.case.turns[-1][:60]
            if result.status == TestResult.Status.PASSED:
                self.stdout.write(f"PASS {n} “{asked}”: {result.latency_ms} ms, {result.tokens} tokens")
            elif result.status == TestResult.Status.FAILED:
                self.stdout.write(f"FAIL {n} “{asked}”: the reply {'; '.join(result.failures)}")
            else:
                self.stdout.write(f"WAIT {n} “{asked}”: no verdict within {wait:g} s (is a worker running?)")
        passed = sum(r.status == TestResult.Status.PASSED for r in results)
        self.stdout.write(f"{passed}/{len(results)} passed")
        if passed != len(results):
            raise CommandError(f"Test set {test_set.name}: {len(results) - passed} of {len(results)} did not pass.")
