"""The API remembers its configuration reads between requests (conversations/store/remembered.py): a change
to a token, a connection or a template is obeyed from the next request on, whoever makes it and however.

PostgreSQL only: elsewhere nothing is remembered. The tests commit (transaction=True), as a deployment does:
a read inside a transaction is never remembered.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from config.postgresql.base import standalone_params
from conversations.api.tokens import integration_rotate_token, integration_set_enabled
from conversations.store import remembered

from .conftest import auth

pytestmark = pytest.mark.django_db(transaction=True)

# Refused after the token, the named connection and the template are read, and before anything is written.
CHAT = {"model": "Sandbox", "messages": [{"role": "user", "content": "Hello"}], "temperature": 5}
MESSAGE = {"template": "Support", "contact": "+33612345678", "message": 5}


@pytest.fixture(autouse=True)
def postgresql_only():
    if db.vendor != "postgresql":
        pytest.skip("only PostgreSQL's reads are remembered")


@pytest.fixture
def listening():
    """This process's watcher listening (it starts on the first read)."""
    remembered.read("warm-up", lambda: None)
    deadline = time.monotonic() + 10
    while not remembered.memory.listening:
        assert time.monotonic() < deadline, "the configuration watcher never started listening"
        time.sleep(0.01)


def chat(client, token: str):
    return client.post("/api/v1/chat/completions", CHAT, content_type="application/json", **auth(token))


def eventually(check, seconds: float = 5):
    """Whether `check()` comes true within `seconds` (a notice from another connection takes a moment)."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def other_connection():
    """A connection of its own, as another process (psql, a second web server) would change things."""
    return psycopg.connect(**standalone_params(), autocommit=True)


def read_nothing(client, token: str) -> bool:
    """Whether a chat request refused for its body read nothing from the database (its token's and its named
    connection's rows came from memory)."""
    with CaptureQueriesContext(db) as queries:
        response = chat(client, token)
    assert response.status_code == 400
    assert "temperature" in response.json()["error"]["message"]
    return len(queries) == 0


def remembered_now(client, token: str) -> None:
    """Requests until the token's rows are remembered (the first notes the token's use: a change like any
    other, whose notice empties the memory once)."""
    assert eventually(lambda: read_nothing(client, token)), "the rows were never remembered"


def test_later_requests_read_no_configuration(client, integration_token, listening):
    """The first request reads the token's and the named connection's rows; from then on a request refused
    for its body reads nothing at all."""
    integration, token = integration_token
    assert not read_nothing(client, token)
    remembered_now(client, token)


def test_a_disabled_integration_is_refused_at_its_next_request(client, integration_token, listening):
    integration, token = integration_token
    remembered_now(client, token)
    integration_set_enabled(integration=integration, enabled=False)
    response = chat(client, token)
    assert response.status_code == 401
    assert "disabled" in response.json()["error"]["message"]


def test_a_rotated_token_is_refused_and_the_new_one_taken(client, integration_token, listening):
    integration, old = integration_token
    remembered_now(client, old)
    new = integration_rotate_token(integration=integration)
    assert chat(client, old).status_code == 401
    assert chat(client, new).status_code == 400


def test_a_change_made_elsewhere_in_sql_is_obeyed(client, integration_token, listening):
    """No ORM signal here: only PostgreSQL's notice tells this process."""
    integration, token = integration_token
    remembered_now(client, token)
    with other_connection() as other:
        other.execute("UPDATE conversations_integration SET is_active = false WHERE id = %s", [integration.pk])
    assert eventually(lambda: chat(client, token).status_code == 401)


def test_a_connection_taken_off_the_integration_elsewhere_is_refused(client, integration_token, listening):
    integration, token = integration_token
    remembered_now(client, token)
    through = integration.connections.through._meta.db_table
    with other_connection() as other:
        other.execute(f"DELETE FROM {through} WHERE integration_id = %s", [integration.pk])  # noqa: S608
    assert eventually(lambda: chat(client, token).status_code == 404)
    assert chat(client, token).json()["error"]["code"] == "model_not_found"


def test_a_template_taken_off_the_integration_is_refused(client, integration_token, listening):
    integration, token = integration_token
    post = lambda: client.post("/api/v1/messages", MESSAGE, content_type="application/json", **auth(token))  # noqa: E731
    assert post().json()["error"]["param"] == "message"  # the template was fine
    integration.templates.clear()
    response = post()
    assert response.json()["error"]["param"] == "template"


def test_a_lost_watcher_connection_forgets_what_it_could_not_hear(client, integration_token, listening):
    """The watcher's connection is cut (a PostgreSQL restart, a network blip) and a change is made before it
    listens again: the change is obeyed all the same."""
    integration, token = integration_token
    remembered_now(client, token)
    with other_connection() as other:
        other.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [remembered.APPLICATION_NAME],
        )
        other.execute("UPDATE conversations_integration SET is_active = false WHERE id = %s", [integration.pk])
    assert eventually(lambda: chat(client, token).status_code == 401)
    assert eventually(lambda: remembered.memory.listening, 15), "the watcher did not listen again"


def test_a_change_made_with_triggers_off_for_replication_is_obeyed(client, integration_token, listening):
    """Logical replication's apply and some bulk loaders run as `replica`, where ordinary triggers sleep."""
    integration, token = integration_token
    remembered_now(client, token)
    with other_connection() as other:
        other.execute("SET session_replication_role = replica")
        other.execute("UPDATE conversations_integration SET is_active = false WHERE id = %s", [integration.pk])
    assert eventually(lambda: chat(client, token).status_code == 401)


def test_a_notice_waiting_unread_is_not_outrun(client, integration_token, listening, monkeypatch):
    """A reader does not wait for the watcher thread to be scheduled: while a notice waits on the watcher's
    socket unread, reads go to the database."""
    integration, token = integration_token
    remembered_now(client, token)
    # The watcher stalls (as it does when it waits for the interpreter lock under load): it takes nothing.
    release, take = threading.Event(), remembered._take_notices
    monkeypatch.setattr(remembered, "_take_notices", lambda conn, seconds: release.wait(10) and take(conn, seconds))
    try:
        with other_connection() as other:
            other.execute("UPDATE conversations_integration SET is_active = false WHERE id = %s", [integration.pk])
        assert eventually(remembered.memory.news)
        assert chat(client, token).status_code == 401
    finally:
        release.set()


def test_a_change_no_trigger_announced_is_obeyed_within_the_age_limit(client, integration_token, listening):
    """Triggers disabled by hand (as pg_restore --disable-triggers does): nothing announces the change, and
    the memory's age limit bounds how long the old row answers."""
    integration, token = integration_token
    remembered_now(client, token)
    table = "conversations_integration"
    with other_connection() as other:
        with other.transaction():
            other.execute(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
            other.execute(f"UPDATE {table} SET is_active = false WHERE id = %s", [integration.pk])  # noqa: S608
            other.execute(f"ALTER TABLE {table} ENABLE TRIGGER ALL")
        other.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER switchboard_config_changed")  # as 0028 left it
    assert eventually(lambda: chat(client, token).status_code == 401, remembered.MAX_AGE_SECONDS + 3)
