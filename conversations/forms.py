from __future__ import annotations

from django import forms

from connectors.models import ProviderConnection

from .models import PromptTemplate
from .payloads import printable

VARIABLE_PREFIX = "var_"


class PrintableJSONField(forms.JSONField):
    """A JSON form field that shows a refused value back safely: `"\\ud800"` typed into it decodes to a lone
    surrogate, which the model's validator refuses, and which no HTML page can be encoded with."""

    def prepare_value(self, value):
        return printable(super().prepare_value(value))


class TestSendForm(forms.Form):
    """Connection, template, one field per template variable, and the customer's message."""

    connection = forms.ModelChoiceField(queryset=ProviderConnection.objects.all(), empty_label=None)
    template = forms.ModelChoiceField(queryset=PromptTemplate.objects.all(), empty_label=None)
    customer_message = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "What the customer writes on WhatsApp"}),
        strip=False,
    )
    model = forms.CharField(
        required=False,
        label="Model override",
        widget=forms.TextInput(attrs={"list": "known-models", "placeholder": "the connection's model"}),
    )
    temperature = forms.FloatField(
        required=False,
        min_value=0,
        max_value=2,
        label="Temperature override",
        widget=forms.NumberInput(attrs={"step": "0.1"}),
    )
    max_tokens = forms.IntegerField(required=False, min_value=1, max_value=1_000_000, label="Max tokens override")

    def __init__(self, *args, template: PromptTemplate | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.chosen_template = template
        for name in template.variables if template else []:
            self.fields[VARIABLE_PREFIX + name] = forms.CharField(
                label=name.replace("_", " ").capitalize(), required=False, help_text=f"{{{{{name}}}}} in the template"
            )

    def variable_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.fields if name.startswith(VARIABLE_PREFIX)]

    def overrides(self) -> dict[str, object]:
        return {k: self.cleaned_data.get(k) for k in ("model", "temperature", "max_tokens")}

    def variables(self) -> dict[str, str]:
        return {
            name.removeprefix(VARIABLE_PREFIX): value
            for name, value in self.cleaned_data.items()
            if name.startswith(VARIABLE_PREFIX)
        }


class ReplyForm(forms.Form):
    customer_message = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "The customer's next message"}), strip=False
    )
