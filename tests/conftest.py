"""Shared fixtures: the sandbox provider on loopback, a private Redis, and a real Celery worker process.

Nothing here mocks the provider: tests talk HTTP to the sandbox, as production talks to Mistral.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from django.conf import settings

from connectors.sandbox import SandboxServer

from .factories import ConnectionFactory, TemplateFactory
from .pages import world  # noqa: F401 - a fixture: one of everything a page can show
from .processes import start_redis
from .stack import own_stack, slow_sandbox  # noqa: F401 - fixtures: a private Redis and its processes; a slow sandbox


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
def integration_token(sandbox, db):
    """An integration allowed one template ("Support") and one connection ("Sandbox"), and its token."""
    from conversations.api.tokens import integration_create

    connection = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=1)
    template = TemplateFactory(name="Support")
    integration, token = integration_create(name="Chatbot", templates=[template], connections=[connection])
    return integration, token


# Fixtures that start real worker processes: with one, calls are rung claimed as in production.
REAL_WORKERS = {"celery_worker", "own_stack", "stack"}


@pytest.fixture(autouse=True)
def rung_claimed_only_with_a_real_worker(request, monkeypatch):
    """Calls are rung claimed (conversations/store/preclaimed.py) only in a test that runs a real worker, or
    asks for it (tests/api/test_preclaimed.py): any other test that runs a call in its own process expects it
    queued, whether or not a worker of the session happens to be listening."""
    if not REAL_WORKERS & set(request.fixturenames):
        from conversations import doorbell

        monkeypatch.setattr(doorbell, "taking_claimed", lambda: False)


@pytest.fixture
def published(monkeypatch):
    """Stand in for the broker: record each task published, as (task name, row id, countdown)."""
    from conversations import queue

    sent = []
    monkeypatch.setattr(queue, "publish", lambda task, row_id, countdown=None: sent.append((task, row_id, countdown)))
    return sent


@pytest.fixture(params=["celery", "doorbell list"])
def ring_path(request, monkeypatch):
    """Run the test with calls rung through a Celery message and through the workers' list
    (conversations/doorbell.py), whichever a worker of the session happens to be listening on."""
    from conversations import doorbell

    monkeypatch.setattr(doorbell, "listening", lambda: request.param == "doorbell list")
    return request.param


@pytest.fixture
def template(db):
    return TemplateFactory(name="Support")


def user_in(django_user_model, username: str, group: str):
    """A user with one of the two roles every migrate creates (and every flush of a transactional test)."""
    from django.contrib.auth.models import Group

    user = django_user_model.objects.create_user(username, password=f"{username}-password-1")
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def support_user(db, django_user_model):
    return user_in(django_user_model, "agent", "Support staff")


@pytest.fixture
def team_admin(db, django_user_model):
    return user_in(django_user_model, "lead", "Admins")


@pytest.fixture
def staff_client(client, support_user):
    client.force_login(support_user)
    return client


@pytest.fixture
def lead_client(client, team_admin):
    client.force_login(team_admin)
    return client


@pytest.fixture(scope="session")
def broker_url():
    """The test broker: CELERY_BROKER_URL from the environment, or a private Redis started here."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis+socket://"):
        yield url
        return
    process = start_redis(Path(urlsplit(url).path))
    yield url
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup):
    """pytest-django's test databases, and this process's configuration watcher stopped before they are
    dropped (PostgreSQL refuses to drop a database someone is connected to)."""
    from conversations.store import remembered

    yield
    remembered.stop()


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
def celery_worker(subprocess_env, broker_url, tmp_path_factory):
    """A real `celery -A config worker` process. Stops before the test database is dropped."""
    import redis

    from .processes import start_worker, stop

    if broker_url.startswith("redis://"):
        redis.Redis.from_url(broker_url).flushdb()  # nothing left over from an earlier run
    process = start_worker(subprocess_env, tmp_path_factory.mktemp("worker") / "worker.log", name="test")
    yield process
    stop(process)
