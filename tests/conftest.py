"""Shared fixtures: the sandbox provider on loopback, a private Redis, and a real Celery worker process.

Nothing here mocks the provider: tests talk HTTP to the sandbox, as production talks to Mistral.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings

from connectors.sandbox import SandboxServer
from conversations.management.commands.runbroker import redis_server_argv

from .factories import ConnectionFactory, TemplateFactory
from .helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def sandbox():
    server = SandboxServer(0)
    server.start_in_thread()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def connection(db, sandbox):
    return ConnectionFactory(name="Sandbox", base_url=sandbox.base_url)


@pytest.fixture
def template(db):
    return TemplateFactory(name="Support")


@pytest.fixture(scope="session")
def broker_url():
    """The test broker: CELERY_BROKER_URL from the environment, or a private Redis started here."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis+socket://"):
        yield url
        return
    socket_path = Path(urlsplit(url).path)
    socket_path.unlink(missing_ok=True)
    process = subprocess.Popen(redis_server_argv(socket_path), stdout=subprocess.DEVNULL)
    wait_until(socket_path.exists, 10, "the private Redis to listen")
    yield url
    process.terminate()
    process.wait(10)


def _database_url() -> str:
    """The URL of the test database pytest-django created, for processes started by tests."""
    from django.db import connection

    s = connection.settings_dict
    if s["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{s['NAME']}"
    auth = quote(s["USER"] or "") + (f":{quote(s['PASSWORD'])}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture(scope="session")
def subprocess_env(django_db_setup, broker_url):
    """Environment for manage.py and celery processes: same settings, test database and broker."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker_url,
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def celery_worker(subprocess_env, tmp_path_factory):
    """A real `celery -A config worker` process. Stops before the test database is dropped."""
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            "2",
            "--purge",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            "test@%h",
        ],
        cwd=ROOT,
        env=subprocess_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_until(lambda: " ready." in log_path.read_text() or process.poll() is not None, 30, "the worker to start")
    if process.poll() is not None:
        pytest.fail(f"The Celery worker did not start:\n{log_path.read_text()}")
    process.log_path = log_path
    yield process
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
