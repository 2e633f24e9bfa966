from __future__ import annotations

import pytest

from conversations.models import PromptTemplate
from conversations.rendering import TemplateVariableError


def make(system="Support for {{business_name}}.", user="{{customer_message}}"):
    return PromptTemplate(name="Support", system_prompt=system, user_message=user)


def test_it_fills_every_placeholder():
    template = make(user="Customer {{ name }} asks: {{customer_message}}")

    system, user = template.render(variables={"business_name": "Acme", "name": "Sheena"}, customer_message="Hi")

    assert system == "Support for Acme."
    assert user == "Customer Sheena asks: Hi"


def test_the_user_message_defaults_to_the_customer_message():
    assert PromptTemplate().user_message == "{{customer_message}}"


def test_it_lists_placeholders_once_in_order():
    template = make(system="{{a}} {{ b }} {{a}}", user="{{customer_message}} {{c}}")
    assert template.placeholders == ["a", "b", "customer_message", "c"]
    assert template.variables == ["a", "b", "c"]


def test_a_missing_variable_is_refused_by_name():
    with pytest.raises(TemplateVariableError, match=r"needs a value for \{\{business_name\}\}"):
        make().render(variables={}, customer_message="Hi")


def test_an_empty_variable_counts_as_missing():
    with pytest.raises(TemplateVariableError, match="business_name"):
        make().render(variables={"business_name": "  "}, customer_message="Hi")


def test_an_unknown_variable_is_refused_by_name():
    with pytest.raises(TemplateVariableError, match=r"no placeholder for 'discount'.*add \{\{discount\}\}"):
        make().render(variables={"business_name": "Acme", "discount": "10%"}, customer_message="Hi")


def test_braces_in_the_customer_text_are_left_alone():
    system, user = make().render(
        variables={"business_name": "Acme {{customer_message}}"}, customer_message="What is {{business_name}}? {{x}}"
    )
    assert user == "What is {{business_name}}? {{x}}"
    assert system == "Support for Acme {{customer_message}}."


def test_malformed_braces_are_plain_text():
    system, _ = make(system="Use {{ not valid }} or {single} or {{9x}}").render(variables={}, customer_message="Hi")
    assert system == "Use {{ not valid }} or {single} or {{9x}}"
