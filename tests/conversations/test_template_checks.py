"""A template is checked when it is saved: a placeholder that would be sent as typed, or a user message that
drops what the customer wrote, is refused with the exact problem and its fix, in the form and in add_template."""

from __future__ import annotations

import html

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from conversations.models import PromptTemplate

BROKEN = [
    # (system prompt, user message, what the refusal says)
    ("You work at {{business_name", "{{customer_message}}", "does not close it with }}. Write {{business_name}}"),
    ("You work at {{ business name }}.", "{{customer_message}}", "Write {{business_name}}"),
    ("Hours: {{Opening-Hours}}", "{{customer_message}}", "Write {{opening_hours}}"),
    ("Be kind.", "{customer_message}", "single braces"),
    ("{% if vip %}Be quick.{% endif %}", "{{customer_message}}", "template-language syntax"),
    ("Be kind.", "Answer this: {{customer_mesage}}", "{{customer_mesage}} looks like a typo of it"),
    ("Be kind.", "Answer the customer.", "what the customer writes would never reach the model"),
]


@pytest.mark.parametrize(("system", "user", "problem"), BROKEN)
def test_the_form_refuses_a_broken_template_and_says_how_to_fix_it(lead_client, system, user, problem):
    response = lead_client.post(
        reverse("conversations:template_new"), {"name": "Shop", "system_prompt": system, "user_message": user}
    )
    assert response.status_code == 200
    assert problem in html.unescape(response.content.decode())
    assert not PromptTemplate.objects.filter(name="Shop").exists()


@pytest.mark.parametrize(("system", "user", "problem"), BROKEN)
def test_add_template_refuses_a_broken_template_with_a_non_zero_exit(db, system, user, problem):
    with pytest.raises(CommandError) as refused:
        call_command("add_template", "Shop", system=system, user=user)
    assert problem in str(refused.value)
    assert not PromptTemplate.objects.filter(name="Shop").exists()


def test_editing_a_good_template_into_a_broken_one_keeps_the_good_one(lead_client):
    call_command("add_template", "Shop", system="You work at {{business_name}}.", user="{{customer_message}}")
    template = PromptTemplate.objects.get(name="Shop")
    lead_client.post(
        reverse("conversations:template_edit", args=[template.pk]),
        {"name": "Shop", "system_prompt": "You work at {{business_name}.", "user_message": "{{customer_message}}"},
    )
    template.refresh_from_db()
    assert template.system_prompt == "You work at {{business_name}}."


def test_a_good_template_is_saved_with_its_placeholders(lead_client):
    response = lead_client.post(
        reverse("conversations:template_new"),
        {
            "name": "Shop",
            "system_prompt": 'You work at {{ business_name }}. JSON like {"a": 1} is fine.',
            "user_message": "{{customer_message}}",
        },
        follow=True,
    )
    assert "Created template Shop: version 1, published." in response.content.decode()
    assert PromptTemplate.objects.get(name="Shop").placeholders == ["business_name", "customer_message"]
