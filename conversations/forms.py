from __future__ import annotations

from django import forms

from config.names import validate_name
from connectors.models import ProviderConnection

from .models import PromptTemplate, WhatsAppChannel
from .payloads import printable
from .prompts.services import missing_values

VARIABLE_PREFIX = "var_"


class PrintableJSONField(forms.JSONField):
    """A JSON form field for untrusted text: empty is `{}`, JSON nested too deeply to read is a form error,
    and a refused value is shown back safely (`"\\ud800"` decodes to a lone surrogate, which the model's
    validator refuses, and which no HTML page can be encoded with)."""

    def to_python(self, value):
        if value in (None, ""):
            return {}
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError("This JSON is nested too deeply to read; write a flat object.") from None

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)

    def prepare_value(self, value):
        return printable(super().prepare_value(value))


class WhatsAppChannelForm(forms.ModelForm):
    """Meta's secrets as write-only fields: never rendered back, kept when left empty, required for a new channel."""

    app_secret = forms.CharField(
        label="App secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The Meta app's secret: it verifies every webhook delivery. Stored encrypted.",
    )
    access_token = forms.CharField(
        label="Access token",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="A system-user token allowed to send messages. Stored encrypted.",
    )

    class Meta:
        model = WhatsAppChannel
        fields = [
            "name",
            "phone_number_id",
            "verify_token",
            "template",
            "connection",
            "variables",
            "burst_seconds",
            "handover_keywords",
            "handover_text",
            "handover_marker",
            "apology_text",
            "stop_keywords",
            "start_keywords",
            "opted_out_text",
            "opted_in_text",
            "not_text_reply",
            "graph_base_url",
            "graph_version",
        ]
        field_classes = {"variables": PrintableJSONField}

    def clean(self):
        data = super().clean()
        for name in ("app_secret", "access_token"):
            if not data.get(name) and not getattr(self.instance, f"{name}_encrypted", ""):
                self.add_error(name, "Required: without it the channel can neither verify Meta's deliveries nor reply.")
        # The other side of publishing's check: a channel may not drop a value its template's published text uses,
        # or every customer message there would be refused.
        template, variables = data.get("template"), data.get("variables")
        if template is not None and "variables" not in self.errors:
            text = template.published or template  # what its customers get: the published version, else its own
            missing = missing_values(text, variables)
            if missing:
                listed = ", ".join(f"{{{{{name}}}}}" for name in missing)
                self.add_error(
                    "variables",
                    f"Template {template.name}'s published text uses {listed}, so every customer message here would "
                    f'be refused without it. Add it, e.g. {{"{missing[0]}": "…"}}.',
                )
        return data

    def save(self, commit: bool = True):
        from connectors import crypto

        for name in ("app_secret", "access_token"):
            if self.cleaned_data.get(name):
                setattr(self.instance, f"{name}_encrypted", crypto.encrypt(self.cleaned_data[name]))
        return super().save(commit)


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
        max_length=200,
        validators=[validate_name],
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
            # Not required by the form: the send refuses a missing value naming the template and the fix. The
            # browser marks the field as needed before anything is sent.
            self.fields[VARIABLE_PREFIX + name] = forms.CharField(
                label=name.replace("_", " ").capitalize(),
                required=False,
                help_text=f"{{{{{name}}}}} in the template",
                widget=forms.TextInput(attrs={"required": True, "aria-required": "true"}),
            )

    def clean_customer_message(self) -> str:
        # Browsers send a textarea's line breaks as CRLF; the preview (and a customer's phone) write LF.
        return self.cleaned_data["customer_message"].replace("\r\n", "\n")

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

    def clean_customer_message(self) -> str:
        return self.cleaned_data["customer_message"].replace("\r\n", "\n")
