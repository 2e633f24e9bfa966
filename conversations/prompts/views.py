"""Prompt templates in the dashboard: everyone reads them, their versions and diffs; Admins save and publish.

A save makes a version (a draft unless "Save and publish"); the template page lists every version with who
made it, when and what it changed, which one customers get, and a diff against it.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from .. import rendering
from ..models import PromptTemplate, TemplateVersion, TestSet, WhatsAppChannel
from .services import PublishRefused, template_save, version_diff, version_publish

SAMPLE_MESSAGE = "Do you deliver on Sundays?"


class PromptTemplateForm(forms.Form):
    name = forms.CharField(max_length=100)
    system_prompt = forms.CharField(
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text="Sent as the system message, e.g. who the bot is. {{name}} is a placeholder.",
    )
    user_message = forms.CharField(
        initial="{{customer_message}}",
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Sent as the user message. {{customer_message}} is what the customer wrote.",
    )


@login_required
@permission_required("conversations.view_prompttemplate", raise_exception=True)
def template_list(request: HttpRequest) -> HttpResponse:
    templates = PromptTemplate.objects.select_related("published")
    return render(request, "conversations/template_list.html", {"templates": templates})


@login_required
@permission_required("conversations.view_prompttemplate", raise_exception=True)
def template_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """A template's page: its text (editable by Admins), a live preview, and its versions."""
    template = get_object_or_404(PromptTemplate, pk=pk) if pk else None
    can_edit = request.user.has_perm("conversations.change_prompttemplate") and (
        template is not None or request.user.has_perm("conversations.add_prompttemplate")
    )
    if template is None and not can_edit:
        raise PermissionDenied
    newest = template.versions.order_by("-number").first() if template else None
    chosen = request.GET.get("from", "")
    start_version = (
        template.versions.filter(number=int(chosen)).first()
        if template and chosen.isdigit() and len(chosen) < 9
        else None
    ) or newest
    start = start_version or template
    initial = (
        {"name": template.name, "system_prompt": start.system_prompt, "user_message": start.user_message}
        if (template)
        else None
    )
    form = PromptTemplateForm(request.POST or None, initial=initial)
    if request.method == "POST":
        if not can_edit:
            raise PermissionDenied
        if form.is_valid():
            data = form.cleaned_data
            try:
                saved = template_save(
                    template=template,
                    name=data["name"],
                    system_prompt=data["system_prompt"],
                    user_message=data["user_message"],
                    by=request.user,
                    publish="publish" in request.POST,
                )
            except ValidationError as error:
                for field, problems in error.message_dict.items():
                    for problem in problems:
                        form.add_error(field if field in form.fields else None, problem)
            except PublishRefused as refused:
                kept = refused.saved
                if kept.new_version:
                    words = f"Saved version {kept.version.number} as a draft, not published."
                else:
                    words = f"Nothing new to save: version {kept.version.number} has this text. It was not published."
                messages.error(request, f"{words} {refused}")
                return redirect("conversations:template_edit", pk=kept.template.pk)
            else:
                messages.success(request, _saved_words(saved))
                return redirect("conversations:template_edit", pk=saved.template.pk)
    versions = list(template.versions.select_related("created_by")) if template else []
    context = {
        "template": template,
        "heading": f"Template {template.name}" if template else "New template",
        "form": form,
        "can_edit": can_edit,
        "versions": versions,
        "newest": newest,
        "start_version": start_version,
        "channels": WhatsAppChannel.objects.filter(template=template) if template else [],
        "test_sets": TestSet.objects.all(),
    }
    return render(request, "conversations/template_edit.html", context)


def _saved_words(saved) -> str:
    name, number = saved.template.name, saved.version.number
    if saved.created:
        return f"Created template {name}: version 1, published."
    if not saved.new_version:
        return f"No change to the text: version {number} has it" + (", published." if saved.published else ".")
    if saved.published:
        return f"Saved and published version {number} of {name}: customers get it from their next message."
    return f"Saved version {number} of {name} as a draft. Customers get version {saved.template.published.number}."


@login_required
@permission_required("conversations.change_prompttemplate", raise_exception=True)
@require_POST
def version_publish_view(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    version = get_object_or_404(TemplateVersion, template_id=pk, number=number)
    try:
        version_publish(version=version, by=request.user)
    except PublishRefused as refused:
        messages.error(request, f"Version {number} was not published. {refused}")
    else:
        messages.success(request, f"Published version {number}: customers get it from their next message.")
    return redirect("conversations:template_edit", pk=pk)


@login_required
@permission_required("conversations.view_prompttemplate", raise_exception=True)
def version_compare(request: HttpRequest, pk: int) -> HttpResponse:
    """Two versions side by side as a diff: ?a=2&b=5 (default: the published one and the newest)."""
    template = get_object_or_404(PromptTemplate, pk=pk)
    numbers = list(template.versions.values_list("number", flat=True))
    if not numbers:
        messages.error(request, "This template has no versions yet.")
        return redirect("conversations:template_edit", pk=pk)

    def chosen(key: str, default: int) -> int:
        value = request.GET.get(key, "")
        if value.isascii() and value.isdigit() and int(value) in numbers:
            return int(value)
        if value:  # said, not silently swapped: the diff must show what it compares
            messages.error(request, f"{template.name} has no version {value[:20]!r}; showing version {default}.")
        return default

    published = template.published.number if template.published_id else min(numbers)
    a, b = chosen("a", published), chosen("b", max(numbers))
    older, newer = (template.versions.get(number=n) for n in (a, b))
    context = {"template": template, "a": older, "b": newer, "numbers": numbers, "diff": version_diff(older, newer)}
    return render(request, "conversations/template_diff.html", context)


@login_required
@permission_required("conversations.view_prompttemplate", raise_exception=True)
@require_POST
def template_preview(request: HttpRequest) -> HttpResponse:
    """The text as typed, rendered with sample values: a channel's where one uses the template, else ‹name›."""
    system, user = request.POST.get("system_prompt", ""), request.POST.get("user_message", "")
    problems = rendering.text_problems(system, user)
    names = rendering.placeholders(system, user)
    channel = None
    if request.POST.get("template", "").isdigit():
        channel = WhatsAppChannel.objects.filter(template_id=int(request.POST["template"])).first()
    samples = {**(channel.variables if channel else {})}
    values = {n: samples.get(n) or f"‹{n}›" for n in names if n != rendering.CUSTOMER_MESSAGE}
    values[rendering.CUSTOMER_MESSAGE] = SAMPLE_MESSAGE
    unfilled = sorted(n for n in names if n != rendering.CUSTOMER_MESSAGE and channel and n not in samples)
    context = {
        "unfilled": unfilled,
        "problems": [p for ps in problems.values() for p in ps],
        "system": rendering.render(system, values),
        "user": rendering.render(user, values),
        "channel": channel,
        "sample_message": SAMPLE_MESSAGE,
    }
    return render(request, "conversations/_template_preview.html", context)
