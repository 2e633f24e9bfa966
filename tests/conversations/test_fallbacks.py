"""Fallbacks keep the bot answering when a connection fails for good; the circuit breaker skips a failing
connection straight to its fallback, then tries it again."""

from __future__ import annotations

import time

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from connectors import circuit
from connectors.errors import ErrorKind
from conversations import services
from conversations.models import Call
from tests.factories import ConnectionFactory, TemplateFactory
from tests.helpers import execute_now

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_circuits(broker_url):
    """Circuit state lives in Redis under connection ids, which a database rolled back will hand out again."""
    keys = circuit.client().keys("sb:circuit:*")
    if keys:
        circuit.client().delete(*keys)
    yield


@pytest.fixture
def chain(sandbox):
    """Primary (failing as each test makes it) → Backup (the sandbox, answering)."""
    backup = ConnectionFactory(name="Backup", base_url=sandbox.base_url, model="mistral-small-latest")
    primary = ConnectionFactory(name="Primary", base_url=sandbox.base_url, max_attempts=1, fallback=backup)
    return primary, backup


def send(connection, text="Do you deliver?", **overrides):
    return services.call_send(
        connection=connection,
        template=TemplateFactory(),
        customer_message=text,
        variables={"business_name": "Acme"},
        overrides=overrides or None,
    )


def run_all(call) -> list[Call]:
    """Execute the call and every hop it queues, in order; the attempts for its message."""
    while True:
        queued = Call.objects.filter(message_id=call.message_id, status=Call.Status.QUEUED).order_by("id").first()
        if queued is None:
            return list(Call.objects.filter(message_id=call.message_id).order_by("attempt"))
        execute_now(queued.pk)


def test_a_revoked_key_falls_back_and_the_customer_is_answered(chain):
    primary, backup = chain
    primary.set_api_key("wrong-revoked-key-0000")
    primary.save()

    first, hop = run_all(send(primary))

    assert (first.connection, first.status, first.error_kind) == (primary, "failed", ErrorKind.AUTH)
    assert (hop.connection, hop.status, hop.fallback_from, hop.attempt) == (backup, "succeeded", first, 2)
    assert hop.reply_text == "Sandbox reply from mistral-small-latest: you said 'Do you deliver?'."
    assert first.latest_attempt() == hop


def test_retries_are_spent_on_the_connection_before_its_fallback_answers(chain, settings):
    settings.CALL_RETRY_BACKOFF_SECONDS = 0
    primary, backup = chain
    primary.model, primary.max_attempts = "sandbox-server-error", 2
    primary.save()

    attempts = run_all(send(primary))

    assert [(c.connection.name, c.connection_attempt, c.status) for c in attempts] == [
        ("Primary", 1, "failed"),
        ("Primary", 2, "failed"),
        ("Backup", 1, "succeeded"),
    ]


def test_a_model_named_for_the_first_connection_is_not_sent_to_its_fallback(chain):
    primary, backup = chain
    primary.set_api_key("wrong-revoked-key-0000")
    primary.save()

    *_, hop = run_all(send(primary, model="mistral-large-latest"))

    assert hop.request["model"] == backup.model == "mistral-small-latest"


@pytest.mark.parametrize("model", ["sandbox-context-length"])
def test_an_error_the_message_causes_goes_to_no_fallback(chain, model):
    primary, _ = chain
    primary.model = model
    primary.save()

    attempts = run_all(send(primary))

    assert [(c.connection.name, c.error_kind) for c in attempts] == [("Primary", ErrorKind.CONTEXT_TOO_LONG)]


def test_a_chain_is_followed_and_never_loops_back(sandbox):
    last = ConnectionFactory(name="Last", base_url=sandbox.base_url)
    middle = ConnectionFactory(name="Middle", base_url=sandbox.base_url, api_key="wrong-middle-key", fallback=last)
    first = ConnectionFactory(name="First", base_url=sandbox.base_url, api_key="wrong-first-key-0", fallback=middle)

    attempts = run_all(send(first))

    assert [(c.connection.name, c.status) for c in attempts] == [
        ("First", "failed"),
        ("Middle", "failed"),
        ("Last", "succeeded"),
    ]
    last.fallback = first  # a loop made later, behind the form's back: the message still ends
    Call.objects.filter(connection=last).delete()
    last.set_api_key("wrong-last-key-000")
    last.save()
    attempts = run_all(send(first, text="Again"))
    assert [c.connection.name for c in attempts] == ["First", "Middle", "Last"]


def test_a_loop_of_fallbacks_is_refused_when_saved(sandbox):
    a = ConnectionFactory(name="A", base_url=sandbox.base_url)
    b = ConnectionFactory(name="B", base_url=sandbox.base_url, fallback=a)
    a.fallback = b
    with pytest.raises(ValidationError) as refused:
        a.full_clean()
    assert "A loop: A → B → A" in refused.value.message_dict["fallback"][0]


def test_after_repeated_failures_the_connection_is_skipped_then_tried_again(chain, settings):
    settings.CIRCUIT_FAILURES, settings.CIRCUIT_COOLDOWN_SECONDS = 2, 1
    primary, backup = chain
    primary.model = "sandbox-overloaded"  # 503: transient
    primary.save()

    for n in range(2):
        run_all(send(primary, text=f"Opening {n}"))
    assert circuit.state(primary).name == "open"

    skipped, answered = run_all(send(primary, text="While open"))
    assert skipped.error_kind == ErrorKind.PROVIDER_ERROR and skipped.http_status is None  # nothing was sent
    assert "skipped for 1 s and its fallback answers" in skipped.error_message
    assert answered.connection == backup and answered.status == "succeeded"

    time.sleep(1.1)
    primary.model = "mistral-small-latest"  # the provider is back
    primary.save()
    (probe,) = run_all(send(primary, text="After the cool-down"))
    assert (probe.connection, probe.status) == (primary, "succeeded")
    assert circuit.state(primary).name == "closed"


def test_the_connections_page_shows_each_fallback_its_health_and_last_errors(chain, settings, client, team_admin):
    settings.CIRCUIT_FAILURES = 1
    primary, _ = chain
    primary.model = "sandbox-overloaded"
    primary.save()
    run_all(send(primary))
    client.force_login(team_admin)

    page = client.get(reverse("connectors:list")).content.decode()

    assert "Falls back to <strong>Backup</strong>" in page
    assert "Skipped until" in page
    assert "Service tier capacity exceeded for this model." in page


def test_add_connection_names_a_fallback(sandbox):
    from io import StringIO

    from django.core.management import call_command

    ConnectionFactory(name="Backup", base_url=sandbox.base_url)
    call_command("add_connection", "Main", "--api-key", "sk-main-0000000", "--fallback", "Backup", stdout=StringIO())
    from connectors.models import ProviderConnection

    assert ProviderConnection.objects.get(name="Main").fallback.name == "Backup"


def test_the_console_and_the_transcript_say_which_connection_answered(chain, staff_client):
    primary, _ = chain
    primary.set_api_key("wrong-revoked-key-0000")
    primary.save()
    first, hop = run_all(send(primary))

    panel = staff_client.get(reverse("conversations:call_status", args=[first.pk])).content.decode()
    transcript = staff_client.get(reverse("conversations:detail", args=[first.conversation_id])).content.decode()

    assert "via <strong>Backup</strong> (the fallback of Primary)" in panel
    assert "Attempt 1 on Primary: Authentication" in panel
    assert "via Backup, the fallback" in transcript
