"""Test sets in the dashboard: cases, runs shown live, two runs side by side, and a case taken from a reply.

Support staff see everything here, run sets and add cases; Admins also choose which set a template must pass
before a version is published (on the template's page).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from connectors.models import ProviderConnection

from .. import queue
from ..models import Message, PromptTemplate, TestResult, TestRun, TestSet
from .testing import TestSetRefused, case_add, run_advance, run_start

VIEW = "conversations.view_testset"


@login_required
@permission_required(VIEW, raise_exception=True)
def testset_list(request: HttpRequest) -> HttpResponse:
    sets = TestSet.objects.prefetch_related("cases", "runs")
    return render(request, "conversations/testset_list.html", {"sets": sets})


@login_required
@permission_required(VIEW, raise_exception=True)
def testset_detail(request: HttpRequest, pk: int) -> HttpResponse:
    test_set = get_object_or_404(TestSet, pk=pk)
    cases = list(test_set.cases.select_related("template"))
    templates = {case.template for case in cases}
    versions = list(next(iter(templates)).versions.all()) if len(templates) == 1 else []
    runs = list(test_set.runs.select_related("connection", "version", "started_by")[:50])
    for run in runs:
        results = list(run.results.all())
        run.passed = sum(r.status == TestResult.Status.PASSED for r in results)
        run.total = len(results)
    context = {
        "test_set": test_set,
        "cases": cases,
        "versions": versions,
        "runs": runs,
        "connections": ProviderConnection.objects.all(),
        "templates_requiring": PromptTemplate.objects.filter(required_test_set=test_set),
    }
    return render(request, "conversations/testset_detail.html", context)


@login_required
@permission_required("conversations.add_testrun", raise_exception=True)
@require_POST
def testrun_new(request: HttpRequest, pk: int) -> HttpResponse:
    test_set = get_object_or_404(TestSet, pk=pk)
    connection = ProviderConnection.objects.filter(pk=_number(request.POST.get("connection"))).first()
    if connection is None:
        messages.error(request, "Choose the connection to run the set on.")
        return redirect("conversations:testset", pk=pk)
    try:
        run = run_start(
            test_set=test_set,
            connection=connection,
            version_number=_number(request.POST.get("version")),
            by=request.user,
        )
    except TestSetRefused as refused:
        messages.error(request, str(refused))
        return redirect("conversations:testset", pk=pk)
    queue.publish_on_commit(queue.ADVANCE_TEST_RUN, run.pk)
    return redirect("conversations:testrun", pk=run.pk)


@login_required
@permission_required(VIEW, raise_exception=True)
def testrun_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """A run's results, live while it runs (a look from here also moves it on, so a watched run never waits
    for the worker's next look)."""
    run = get_object_or_404(TestRun.objects.select_related("test_set", "connection", "version__template"), pk=pk)
    if run.status == TestRun.Status.RUNNING:
        run = run_advance(run)
    results = list(run.results.select_related("case", "conversation"))
    context = {
        "run": run,
        "results": results,
        "passed": sum(r.status == TestResult.Status.PASSED for r in results),
    }
    return render(request, "conversations/testrun_detail.html", context)


@login_required
@permission_required(VIEW, raise_exception=True)
def testrun_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """Two runs of one set side by side, case by case: ?a=RUN&b=RUN."""
    test_set = get_object_or_404(TestSet, pk=pk)
    runs = {run.pk: run for run in test_set.runs.select_related("connection", "version")}
    a, b = runs.get(_number(request.GET.get("a"))), runs.get(_number(request.GET.get("b")))
    if a is None or b is None:
        messages.error(request, "Choose two runs of this set to compare.")
        return redirect("conversations:testset", pk=pk)
    by_case = {}
    for side, run in (("a", a), ("b", b)):
        for result in run.results.select_related("case"):
            by_case.setdefault(result.case_id, {"case": result.case})[side] = result
    rows = [by_case[key] for key in sorted(by_case)]
    context = {"test_set": test_set, "a": a, "b": b, "rows": rows}
    return render(request, "conversations/testrun_compare.html", context)


class CaseFromReplyForm(forms.Form):
    test_set = forms.CharField(
        max_length=100,
        label="Test set",
        help_text="An existing set's name, or a new one.",
        widget=forms.TextInput(attrs={"list": "test-sets"}),
    )
    expect_contains = forms.CharField(required=False, label="The reply must contain", max_length=500)
    expect_not_contains = forms.CharField(required=False, label="The reply must not contain", max_length=500)
    expect_regex = forms.CharField(required=False, label="The reply must match (a regular expression)", max_length=500)
    max_chars = forms.IntegerField(required=False, min_value=1, max_value=100_000, label="At most this many characters")
    no_markdown = forms.BooleanField(required=False, label="No Markdown left after WhatsApp formatting")


@login_required
@permission_required("conversations.add_testcase", raise_exception=True)
def case_from_reply(request: HttpRequest, message_pk: int) -> HttpResponse:
    """ "Add to a test set" on a bot reply: the customer's message it answered, with the conversation's
    template and variables, becomes a case."""
    reply = get_object_or_404(Message.objects.select_related("conversation__template"), pk=message_pk)
    conversation = reply.conversation
    asked = (
        Message.objects.filter(conversation=conversation, role=Message.Role.USER, id__lt=reply.pk)
        .order_by("-id")
        .first()
    )
    if reply.role != Message.Role.ASSISTANT or asked is None or conversation.template is None:
        messages.error(request, "Only a bot's reply to a customer message, in a conversation with a template, can be.")
        return redirect("conversations:detail", pk=conversation.pk)
    form = CaseFromReplyForm(
        request.POST or None, initial={"test_set": TestSet.objects.values_list("name", flat=True).first()}
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            case = case_add(
                set_name=data["test_set"],
                template=conversation.template,
                turns=[asked.customer_message or asked.content],
                variables=conversation.variables,
                expect_contains=[data["expect_contains"]] if data["expect_contains"] else [],
                expect_not_contains=[data["expect_not_contains"]] if data["expect_not_contains"] else [],
                expect_regex=[data["expect_regex"]] if data["expect_regex"] else [],
                max_chars=data["max_chars"],
                no_markdown=data["no_markdown"],
                from_message=reply,
            )
        except TestSetRefused as refused:
            form.add_error(None, str(refused))
        else:
            messages.success(request, f"Added the exchange to test set {case.test_set.name}.")
            return redirect("conversations:testset", pk=case.test_set.pk)
    context = {"form": form, "reply": reply, "asked": asked, "conversation": conversation,
               "sets": TestSet.objects.values_list("name", flat=True)}  # fmt: skip
    return render(request, "conversations/case_from_reply.html", context)


@login_required
@permission_required("conversations.change_prompttemplate", raise_exception=True)
@require_POST
def template_requirement(request: HttpRequest, pk: int) -> HttpResponse:
    """Which test set a template's versions must pass before publishing (none: no run needed)."""
    template = get_object_or_404(PromptTemplate, pk=pk)
    values = request.POST.getlist("test_set")
    if len(values) != 1:  # the form sends one; a post without it, or with two, is not a choice of "none"
        messages.error(request, "Choose one test set (or none) that publishing needs: nothing changed.")
        return redirect("conversations:template_edit", pk=pk)
    chosen = values[0]
    test_set = TestSet.objects.filter(pk=_number(chosen)).first()
    if chosen != "" and test_set is None:  # only the form's "none" clears it: a set deleted meanwhile does not
        messages.error(request, f"There is no test set {chosen[:40]!r} (deleted meanwhile?): nothing changed.")
        return redirect("conversations:template_edit", pk=pk)
    template.required_test_set = test_set
    template._history_user = request.user
    template.save(update_fields=["required_test_set", "updated_at"])
    if test_set:
        messages.success(
            request, f"A version of {template.name} is now published only after {test_set.name} passes on it."
        )
    else:
        messages.success(request, f"Publishing {template.name} needs no test run.")
    return redirect("conversations:template_edit", pk=pk)


def _number(value) -> int | None:
    value = str(value or "")
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None
