from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from connectors.sandbox import SandboxServer


class Command(BaseCommand):
    help = (
        "Run the sandbox provider: a local server that answers like Mistral's API, error bodies included. "
        "See connectors/sandbox.py for the models and keys that trigger each error."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=settings.SANDBOX_PORT, help="Port on 127.0.0.1 (default 8765).")
        parser.add_argument("--delay", type=float, default=0.0, help="Seconds to wait before every reply.")
        parser.add_argument(
            "--flaky",
            type=int,
            default=0,
            metavar="N",
            help="Fail each distinct request's first N tries, with 500 and 429 (Retry-After: 1) in turn.",
        )
        parser.add_argument("--quiet", action="store_true", help="Do not log each request.")
        parser.add_argument(
            "--record", metavar="FILE", help="Append a JSON line per request: arrival, answer time, customer text."
        )

    def handle(self, *args, port: int, delay: float, flaky: int, quiet: bool, record: str | None, **options):
        server = SandboxServer(port, delay=delay, flaky=flaky, verbose=not quiet, record=record)
        self.stdout.write(f"Sandbox provider listening on {server.base_url} (delay {delay:g} s). Ctrl-C stops it.")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
