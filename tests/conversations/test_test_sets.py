"""Test sets: cases with expectations, runs through the worker path, side-by-side runs, and publishing gated
on a passing run."""

from __future__ import annotations

import html
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from connectors.models import ProviderConnection
from conversations.models import Call, Message, PromptTemplate, TestCase, TestResult, TestRun, TestSet
from conversations.prompts.testing import failures_of, run_advance, run_start
from tests.factories import ConnectionFactory
from tests.helpers import execute_now

pytestmark = pytest.mark.django_db
# The sandbox answers "Sandbox reply from MODEL: you said 'MESSAGE'."


@pytest.fixture
def setup(sandbox, published):
    ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=1)
    call_command("add_template", "Support", system="You help {{business_name}}.", stdout=StringIO())
    return PromptTemplate.objects.get()


def add_case(*messages, **options):
    turns = [arg for message in messages for arg in ("--message", message)]
    call_command(
        "add_test_case", "Smoke", *turns, template="Support", var=["business_name=Acme"], stdout=StringIO(), **options
    )


def finish(run: TestRun) -> TestRun:
    """Play the worker: run every queued call, then let the run move on, until it has its verdicts."""
    for _ in range(20):
        for call in Call.objects.filter(status=Call.Status.QUEUED):
            execute_now(call.pk)
        run = run_advance(run)
        if run.status == TestRun.Status.FINISHED:
            return run
    raise AssertionError("the run never finished")


def test_each_expectation_is_checked_and_said_in_words():
    case = TestCase(
        expect_contains=["sunday"],
        expect_not_contains=["sorry"],
        expect_regex=[r"\d+ ?€"],
        max_chars=40,
        no_markdown=True,
    )
    reply = "Sorry, we are **closed** on Sundays and this reply is long."
    assert failures_of(case, reply) == [
        "contains “sorry”",
        "does not match /\\d+ ?€/",
        "is 59 characters, over 40",
    ]  # **closed** becomes *closed* for WhatsApp: no Markdown left
    case.expect_contains, case.expect_not_contains, case.expect_regex, case.max_chars = [], [], [], None
    assert failures_of(case, "See [our hours](https://x.example)\n| a | b |\n|---|---|") == []  # converted
    assert failures_of(case, "Open `**not converted**`") == []  # code is left alone, not Markdown left


# A pattern that backtracks: Python's re took 2 s on this reply, and each "a" more multiplies that by 1.6.
BACKTRACKS, LONG_A = r"(a|aa)+$", "a" * 34


def test_a_pattern_that_backtracks_is_stopped_and_the_case_says_why():
    case = TestCase(expect_regex=[BACKTRACKS, r"\bключ\b"])  # Unicode word boundaries, as in Python's re

    failures = failures_of(case, f"Ваш ключ: {LONG_A}!")

    assert failures == [
        "was not checked against /(a|aa)+$/, which backtracks: it took over 0.1 s on it and was stopped. Nested "
        "repeats such as (a+)+ or (a|aa)+ try every way to split the text; write each repeat once, e.g. a+"
    ]


@pytest.mark.parametrize(
    ("pattern", "words"),
    [("a{10000000}", "repeats 10,000,000 times; a count here is at most 1,000"),
     ("(?x)a{ 3000000 }", "repeats 3,000,000 times; a count here is at most 1,000"),  # spaced, in verbose mode
     ("(?:(?:(?:a{100}){100}){100}){100}", "has repeat counts that multiply past 10,000"),
     ("(?x)(?:a{ 1000 }){ 1000 }", "has repeat counts that multiply past 10,000")],
)  # fmt: skip
def test_a_pattern_too_big_to_build_is_refused_and_never_built(setup, pattern, words):
    """Building one is not under the match's time limit: a{10000000} took 5 s and 2.7 GB of memory."""
    with pytest.raises(CommandError, match=re.escape(words)):
        add_case("Hi", expect_regex=[pattern])
    stored = TestCase(expect_regex=[pattern])  # stored before counts were checked: not built at a run either

    (failure,) = failures_of(stored, "aaa")
    assert failure.startswith(f"was not checked against /{pattern}/, which {words}")
    assert failure.endswith("; edit the case")


def test_a_pattern_that_backtracks_on_the_reply_is_refused_when_the_case_is_made(setup, client, support_user):
    from conversations import services

    call = services.call_send(
        connection=ProviderConnection.objects.get(), template=setup,
        customer_message=LONG_A, variables={"business_name": "Acme"},
    )  # fmt: skip
    execute_now(call.pk)
    reply = Message.objects.get(role="assistant")  # "… you said 'aaaa…a'."
    client.force_login(support_user)

    page = client.post(
        reverse("conversations:case_from_reply", args=[reply.pk]), {"test_set": "Slow", "expect_regex": BACKTRACKS}
    ).content.decode()

    assert "backtracks: it took over 0.1 s on the reply this case is made from" in html.unescape(page)
    assert not TestCase.objects.exists()


def test_a_run_checks_every_case_and_a_multi_turn_case_answers_each_turn(setup):
    add_case("Do you deliver?", expect_contains=["you said 'Do you deliver?'"])
    add_case("Hi", "Where is my parcel?", expect_contains=["parcel"], expect_not_contains=["Hi"])
    add_case("Are you open?", expect_contains=["Sunday"])
    run = run_start(test_set=TestSet.objects.get(), connection=ProviderConnection.objects.get())

    run = finish(run)

    verdicts = [(r.status, r.failures) for r in run.results.order_by("case_id")]
    assert verdicts == [("passed", []), ("passed", []), ("failed", ["does not contain “Sunday”"])]
    second = run.results.order_by("case_id")[1]
    assert list(second.conversation.messages.filter(role="user").values_list("customer_message", flat=True)) == [
        "Hi",
        "Where is my parcel?",
    ]
    assert second.tokens > 0 and second.latency_ms is not None
    assert Call.objects.filter(conversation=second.conversation).first().template_version == setup.published


def test_run_test_set_prints_a_line_per_case_and_fails_unless_all_pass(setup, monkeypatch):
    add_case("Do you deliver?", expect_contains=["deliver"])
    add_case("Hello", max_chars=5)
    from conversations.management.commands import run_test_set

    monkeypatch.setattr(run_test_set, "run_advance", lambda run: finish(run))  # the worker, played here
    out = StringIO()
    with pytest.raises(CommandError, match="1 of 2 did not pass"):
        call_command("run_test_set", "Smoke", connection="Sandbox", wait=5, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Run ") and "version 1 of Support" in lines[0]
    assert lines[1].startswith("PASS 1 “Do you deliver?”")
    assert lines[2].startswith("FAIL 2 “Hello”: the reply is ") and "over 5" in lines[2]
    assert lines[-1] == "1/2 passed"


def test_two_versions_run_side_by_side(setup, client, support_user):
    add_case("Do you deliver?", expect_contains=["help Acme"])  # the system prompt is not in the reply: fails
    call_command("add_template", "Support", system="You help {{business_name}}. Be brief.", stdout=StringIO())
    connection = ProviderConnection.objects.get()
    first = finish(run_start(test_set=TestSet.objects.get(), connection=connection, version_number=1))
    second = finish(run_start(test_set=TestSet.objects.get(), connection=connection, version_number=2))
    assert (first.version.number, second.version.number) == (1, 2)

    client.force_login(support_user)
    page = client.get(
        reverse("conversations:testrun_compare", args=[first.test_set_id]), {"a": first.pk, "b": second.pk}
    ).content.decode()
    page = html.unescape(page)
    assert f"Run {first.pk} · Sandbox · version 1" in page and f"Run {second.pk} · Sandbox · version 2" in page
    assert page.count("Sandbox reply from mistral-small-latest: you said 'Do you deliver?'.") == 2
    assert page.count("does not contain “help Acme”") == 2


def test_a_requirement_naming_no_test_set_is_refused_and_the_requirement_kept(setup, client, team_admin):
    add_case("Do you deliver?", expect_contains=["deliver"])
    test_set = TestSet.objects.get()
    setup.required_test_set = test_set
    setup.save()
    client.force_login(team_admin)
    url = reverse("conversations:template_requirement", args=[setup.pk])

    for garbage in ("99999", "abc"):
        page = html.unescape(client.post(url, {"test_set": garbage}, follow=True).content.decode())
        assert f"There is no test set '{garbage}' (deleted meanwhile?): nothing changed." in page
        setup.refresh_from_db()
        assert setup.required_test_set == test_set
    for mangled in ({}, {"test_set": [str(test_set.pk), ""]}):  # no choice, or two: not a choice of "none"
        page = html.unescape(client.post(url, mangled, follow=True).content.decode())
        assert "Choose one test set (or none) that publishing needs: nothing changed." in page
        setup.refresh_from_db()
        assert setup.required_test_set == test_set
    client.post(url, {"test_set": ""})  # "none" is the one way to clear it
    setup.refresh_from_db()
    assert setup.required_test_set is None


def test_publishing_waits_for_a_passing_run_and_names_the_failed_cases(setup):
    add_case("Do you deliver?", expect_contains=["deliver"])
    add_case("Are you open?", expect_contains=["Sunday"])
    call_command("add_template", "Support", system="You help {{business_name}}!", require_test_set="Smoke",
                 stdout=StringIO())  # fmt: skip
    connection = ProviderConnection.objects.get()

    with pytest.raises(CommandError, match="needs a passing run of test set Smoke on version 2, and there is none"):
        call_command("publish_template", "Support", "2", stdout=StringIO())
    finish(run_start(test_set=TestSet.objects.get(), connection=connection, version_number=2))
    with pytest.raises(CommandError, match="1 case failed: “Are you open\\?”: does not contain “Sunday”"):
        call_command("publish_template", "Support", "2", stdout=StringIO())

    TestCase.objects.filter(turns=["Are you open?"]).update(expect_contains=["open"])
    finish(run_start(test_set=TestSet.objects.get(), connection=connection, version_number=2))
    call_command("publish_template", "Support", "2", stdout=StringIO())
    assert PromptTemplate.objects.get().published.number == 2


def test_a_reply_in_a_transcript_becomes_a_case(setup, client, support_user):
    from conversations import services

    call = services.call_send(
        connection=ProviderConnection.objects.get(), template=setup,
        customer_message="Can I return a bike?", variables={"business_name": "Acme"},
    )  # fmt: skip
    execute_now(call.pk)
    reply = Message.objects.get(role="assistant")
    client.force_login(support_user)
    transcript = client.get(reverse("conversations:detail", args=[call.conversation_id])).content.decode()
    assert reverse("conversations:case_from_reply", args=[reply.pk]) in transcript

    client.post(
        reverse("conversations:case_from_reply", args=[reply.pk]),
        {"test_set": "Returns", "expect_contains": "return", "max_chars": "300"},
    )

    case = TestCase.objects.get()
    assert (case.test_set.name, case.turns, case.variables) == (
        "Returns",
        ["Can I return a bike?"],
        {"business_name": "Acme"},
    )
    assert (case.expect_contains, case.max_chars, case.from_message) == (["return"], 300, reply)


def test_support_staff_run_a_set_from_the_dashboard_and_watch_it(setup, client, support_user):
    add_case("Do you deliver?", expect_contains=["deliver"])
    client.force_login(support_user)
    test_set = TestSet.objects.get()
    connection = ProviderConnection.objects.get()

    response = client.post(reverse("conversations:testrun_new", args=[test_set.pk]), {"connection": connection.pk})

    run = TestRun.objects.get()
    assert response["Location"] == reverse("conversations:testrun", args=[run.pk])
    running = client.get(response["Location"]).content.decode()
    assert 'hx-trigger="every 1s"' in running and "Running" in running
    for call in Call.objects.filter(status=Call.Status.QUEUED):
        execute_now(call.pk)
    done = client.get(response["Location"]).content.decode()  # a look from the page moves it on too
    assert "1/1 passed" in done and 'hx-trigger="every 1s"' not in done
    assert TestResult.objects.get().status == "passed"


def test_add_test_case_refuses_what_could_not_run(setup):
    with pytest.raises(CommandError, match=r"needs a value for \{\{business_name\}\}"):
        call_command("add_test_case", "Smoke", template="Support", message=["Hi"], stdout=StringIO())
    with pytest.raises(CommandError, match="is not a regular expression"):
        add_case("Hi", expect_regex=["(unclosed"])
    with pytest.raises(CommandError, match=r"The name holds an invisible formatting character \(U\+202E\)"):
        call_command("add_test_case", "Evil\u202e", template="Support", message=["Hi"], var=["business_name=Acme"],
                     stdout=StringIO())  # fmt: skip
    with pytest.raises(CommandError, match="No template named 'Nope'"):
        call_command("add_test_case", "Smoke", template="Nope", message=["Hi"], stdout=StringIO())
    assert not TestCase.objects.exists()


def test_a_version_that_dropped_a_placeholder_runs_the_cases_that_carry_it(setup):
    call_command("add_template", "Support", system="You help {{business_name}}, open {{hours}}.", publish=True,
                 stdout=StringIO())  # fmt: skip
    call_command("add_test_case", "Smoke", "--message", "Hi", template="Support", var=["business_name=A", "hours=9"],
                 stdout=StringIO())  # fmt: skip
    call_command("add_template", "Support", system="You help {{business_name}}.", stdout=StringIO())  # v3 drops it
    call_command("add_template", "Support", system="You help {{business_name}} in {{city}}.", stdout=StringIO())

    dropped = finish(
        run_start(test_set=TestSet.objects.get(), connection=ProviderConnection.objects.get(), version_number=3)
    )
    assert dropped.results.get().status == "passed"
    needs_more = finish(
        run_start(test_set=TestSet.objects.get(), connection=ProviderConnection.objects.get(), version_number=4)
    )
    assert needs_more.results.get().failures == [
        "could not be sent: Template 'Support v4' needs a value for {{city}}. Fill in that field and send again."
    ]


def test_add_test_case_says_how_to_give_a_missing_value_on_the_command_line(setup):
    with pytest.raises(CommandError, match=r"needs a value for \{\{business_name\}\}. Give it with --var NAME=VALUE."):
        call_command("add_test_case", "Smoke", "--message", "Hi", template="Support", stdout=StringIO())
