"""Prompt templates in the dashboard: everyone reads them; Admins create and edit, with a change history."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from connectors.views import history_of

from ..models import PromptTemplate


class PromptTemplateForm(forms.ModelForm):
    class Meta:
        model = PromptTemplate
        fields = ["name", "system_prompt", "user_message"]
        widgets = {
            "system_prompt": forms.Textarea(attrs={"rows": 6}),
            "user_message": forms.Textarea(attrs={"rows": 3}),
        }


@login_required
@permission_required("conversations.view_prompttemplate", raise_exception=True)
def template_list(request: HttpRequest) -> HttpResponse:
    return render(request, "conversations/template_list.html", {"templates": PromptTemplate.objects.all()})


@login_required
@permission_required("conversations.change_prompttemplate", raise_exception=True)
def template_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    template = get_object_or_404(PromptTemplate, pk=pk) if pk else None
    form = PromptTemplateForm(request.POST or None, instance=template)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"Saved template {saved.name}.")
        return redirect("conversations:template_edit", pk=saved.pk)
    context = {
        "heading": f"Template {template.name}" if template else "New template",
        "form": form,
        "changes": history_of(template) if template else [],
    }
    return render(request, "_edit_page.html", context)
