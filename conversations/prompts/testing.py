"""Test sets: customer questions asked of a template version through the real worker path, each reply checked.

A run starts every case's first turn at once (a conversation per case, pinned to the version under test),
then `run_advance` moves each case on as its calls finish: the next turn once the last one is answered,
a verdict once the last turn is. Advancing is idempotent and safe from several processes (each result row is
locked while it moves), so the worker's task, the command and a page being watched may all drive a run.

A case's regular expressions are staff's input run against every reply, in the worker and in the web
process that shows a run. Python's `re` cannot be stopped: a pattern that backtracks, such as `(a|aa)+$`,
held a worker for a minute on a 40-character reply and doubles with each character more. They run under
the `regex` package instead (Python's syntax, Unicode classes as in `re`), whose `timeout` stops a match
after MATCH_SECONDS: the case then fails and says why. A pattern that already backtracks on the reply a case
is made from is refused when it is added.
"""

from __future__ import annotations

from decimal import Decimal

import regex
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from config.names import validate_name
from connectors.models import ProviderConnection

from .. import services
from ..models import Call, PromptTemplate, TemplateVersion, TestCase, TestResult, TestRun, TestSet
from ..whatsapp.formatting import markdown_left

TEST_CONTACT = "test set"
MATCH_SECONDS = 0.1  # the longest one expected pattern may take on one reply (a sane one takes microseconds)
# Building a pattern is not under the timeout, and a repeat count is unrolled as it is built: a{10000000}
# took 5 s and 2.7 GB, and nested counts multiply. Counts stay small enough to build in milliseconds.
MAX_REPEAT, MAX_REPEATS_PRODUCT = 1_000, 10_000
# Spaces count too: in verbose mode, (?x)a{ 1000 } is a repeat.
_REPEAT = regex.compile(r"\\.|\{([\d\s]*)(?:,([\d\s]*))?\}", regex.DOTALL)
TOO_SLOW = (
    "backtracks: it took over {seconds} s on {what} and was stopped. Nested repeats such as (a+)+ or (a|aa)+ "
    "try every way to split the text; write each repeat once, e.g. a+"
)


class TestSetRefused(ValueError):
    """A case or a run that cannot be made as asked; the message says why and what to change."""

    __test__ = False


def case_add(
    *,
    set_name: str,
    template: PromptTemplate,
    turns: list[str],
    variables: dict[str, str] | None = None,
    expect_contains: list[str] = (),
    expect_not_contains: list[str] = (),
    expect_regex: list[str] = (),
    max_chars: int | None = None,
    no_markdown: bool = False,
    from_message=None,
) -> TestCase:
    """A new case in the named set (made if new). Its variables must fill the template, as a send's would."""
    turns = [t for t in turns if t.strip()]
    if not turns:
        raise TestSetRefused("A case needs the customer's message (--message TEXT; repeat it for several turns).")
    for turn in turns:
        services.check_message(turn)
    variables = dict(variables or {})
    try:
        template.render_system(variables=variables)
    except services.TemplateVariableError as error:
        raise TestSetRefused(str(error)) from None
    for pattern in expect_regex:
        too_much = repeats_problem(pattern)
        if too_much:
            raise TestSetRefused(f"/{pattern}/ {too_much}.")
        try:
            regex.compile(pattern)
        except regex.error as error:
            raise TestSetRefused(f"{pattern!r} is not a regular expression: {error}.") from None
        if from_message is not None:
            try:
                regex.search(pattern, from_message.content, timeout=MATCH_SECONDS)
            except TimeoutError:
                what = "the reply this case is made from"
                raise TestSetRefused(f"/{pattern}/ {TOO_SLOW.format(seconds=MATCH_SECONDS, what=what)}.") from None
    if not set_name.strip():
        raise TestSetRefused("Name the test set.")
    try:
        validate_name(set_name.strip())
    except ValidationError as error:
        raise TestSetRefused(error.messages[0]) from None
    with transaction.atomic():
        test_set, _ = TestSet.objects.get_or_create(name=set_name.strip()[:100])
        return TestCase.objects.create(
            test_set=test_set,
            template=template,
            variables=variables,
            turns=turns,
            expect_contains=list(expect_contains),
            expect_not_contains=list(expect_not_contains),
            expect_regex=list(expect_regex),
            max_chars=max_chars,
            no_markdown=no_markdown,
            from_message=from_message,
        )


def run_start(
    *, test_set: TestSet, connection: ProviderConnection, version_number: int | None = None, by=None
) -> TestRun:
    """Queue every case's first turn on `connection`, each pinned to the version under test: the given
    number of the cases' template, else each template's published version as the run starts."""
    cases = list(test_set.cases.select_related("template__published"))
    if not cases:
        raise TestSetRefused(f"Test set {test_set.name} has no cases yet. Add one with add_test_case.")
    templates = {case.template_id: case.template for case in cases}
    if version_number is not None:
        if len(templates) > 1:
            names = ", ".join(sorted(t.name for t in templates.values()))
            raise TestSetRefused(f"--version is ambiguous: the set's cases use several templates ({names}).")
        (template,) = templates.values()
        chosen = template.versions.filter(number=version_number).first()
        if chosen is None:
            numbers = ", ".join(str(n) for n in template.versions.values_list("number", flat=True)) or "none"
            raise TestSetRefused(f"{template.name} has no version {version_number} (its versions: {numbers}).")
        versions = {template.pk: chosen}
    else:
        versions = {pk: t.published for pk, t in templates.items()}
    with transaction.atomic():
        run = TestRun.objects.create(
            test_set=test_set,
            connection=connection,
            version=next(iter(versions.values())) if len(versions) == 1 else None,
            started_by=by,
        )
        for case in cases:
            version = versions.get(case.template_id)
            text = version or case.template
            # A version may use fewer values than the case has (a placeholder removed): those are left out. One
            # it needs and the case lacks fails that case, with why, and the others still run.
            variables = {name: value for name, value in case.variables.items() if name in text.variables}
            try:
                call = services.call_send(
                    connection=connection,
                    template=case.template,
                    customer_message=case.turns[0],
                    variables=variables,
                    contact=f"{TEST_CONTACT} {test_set.name}"[:200],
                    version=version,
                )
            except (services.TemplateVariableError, services.SendRefused) as refused:
                TestResult.objects.create(
                    run=run, case=case, status=TestResult.Status.FAILED, failures=[f"could not be sent: {refused}"]
                )
                continue
            TestResult.objects.create(run=run, case=case, conversation=call.conversation, call=call)
    return run


def run_advance(run: TestRun) -> TestRun:
    """Move every case on as far as its calls allow; finish the run once every case has its verdict."""
    TestRun.objects.filter(pk=run.pk).update(advanced_at=timezone.now())
    for result_id in run.results.filter(status=TestResult.Status.PENDING).values_list("pk", flat=True):
        _advance(result_id)
    if not run.results.filter(status=TestResult.Status.PENDING).exists():
        TestRun.objects.filter(pk=run.pk, status=TestRun.Status.RUNNING).update(
            status=TestRun.Status.FINISHED, finished_at=timezone.now()
        )
    run.refresh_from_db()
    return run


def _advance(result_id: int) -> None:
    with transaction.atomic():
        result = (
            TestResult.objects.select_for_update(of=("self",))  # the result row only (call is an outer join)
            .select_related("case", "call")
            .filter(pk=result_id, status=TestResult.Status.PENDING)
            .first()
        )
        if result is None or result.call is None:
            return
        latest = result.call.latest_attempt()
        if not latest.finished:
            return
        if latest.status != Call.Status.SUCCEEDED:
            _verdict(result, latest, [f"was never given: {latest.error_summary}"])
            return
        if result.turn + 1 < len(result.case.turns):
            result.call = services.conversation_reply(
                conversation=result.conversation, customer_message=result.case.turns[result.turn + 1]
            )
            result.turn += 1
            result.save(update_fields=["call", "turn"])
            return
        _verdict(result, latest, failures_of(result.case, latest.reply_text))


def _verdict(result: TestResult, last: Call, failures: list[str]) -> None:
    calls = Call.objects.filter(conversation_id=result.conversation_id).filter(~Q(status=Call.Status.QUEUED))
    result.reply = last.reply_text
    result.failures = failures
    result.status = TestResult.Status.FAILED if failures else TestResult.Status.PASSED
    result.latency_ms = sum(c.latency_ms or 0 for c in calls)
    result.tokens = sum(c.total_tokens or 0 for c in calls)
    costs = [c.cost_usd for c in calls if c.cost_usd is not None]
    result.cost_usd = sum(costs, Decimal(0)) if costs else None
    result.save()


def failures_of(case: TestCase, reply: str) -> list[str]:
    """Each expectation the reply misses, in words; empty when it passes."""
    failures = []
    folded = reply.casefold()
    failures += [f"does not contain “{text}”" for text in case.expect_contains if text.casefold() not in folded]
    failures += [f"contains “{text}”" for text in case.expect_not_contains if text.casefold() in folded]
    failures += [problem for pattern in case.expect_regex if (problem := _regex_failure(pattern, reply))]
    if case.max_chars is not None and len(reply) > case.max_chars:
        failures.append(f"is {len(reply):,} characters, over {case.max_chars:,}")
    if case.no_markdown:
        left = markdown_left(reply)
        if left:
            failures.append(f"keeps Markdown WhatsApp would show as typed: {', '.join(left)}")
    return failures


def repeats_problem(pattern: str) -> str | None:
    """Why a pattern's repeat counts ({n}, {n,m}) would take too long or too much memory to build, or None.
    Every count is multiplied, nested or not: a cheap, safe upper bound without parsing the pattern."""
    product = 1
    for match in _REPEAT.finditer(pattern):
        counts = [int(digits) for n in match.groups() if n and (digits := "".join(n.split()))]
        if not counts:
            continue
        if max(counts) > MAX_REPEAT:
            return f"repeats {max(counts):,} times; a count here is at most {MAX_REPEAT:,}"
        product *= max(max(counts), 1)
        if product > MAX_REPEATS_PRODUCT:
            return (
                f"has repeat counts that multiply past {MAX_REPEATS_PRODUCT:,} (each is unrolled as the pattern is "
                "built); use fewer or smaller ones, or + and *"
            )
    return None


def _regex_failure(pattern: str, reply: str) -> str | None:
    too_much = repeats_problem(pattern)
    if too_much:  # a case stored before counts were checked
        return f"was not checked against /{pattern}/, which {too_much}; edit the case"
    try:
        if regex.search(pattern, reply, timeout=MATCH_SECONDS):
            return None
    except TimeoutError:
        return f"was not checked against /{pattern}/, which {TOO_SLOW.format(seconds=MATCH_SECONDS, what='it')}"
    except regex.error as error:  # stored before it was checked when added (an older version's case)
        return f"was not checked against /{pattern}/: not a regular expression ({error}); edit the case"
    return f"does not match /{pattern}/"


def passing_run(version: TemplateVersion, test_set: TestSet) -> tuple[TestRun | None, list[TestResult]]:
    """The newest finished run of the set on this version, and its failed results (empty: it passed)."""
    run = test_set.runs.filter(version=version, status=TestRun.Status.FINISHED).order_by("-id").first()
    if run is None:
        return None, []
    return run, list(run.results.filter(status=TestResult.Status.FAILED).select_related("case"))


def describe_case(case: TestCase) -> str:
    return f"“{case.turns[-1][:80]}”"
