from __future__ import annotations

import json

from django import forms

from .http import api_key_problem
from .models import DEFAULT_MODEL, MISTRAL_BASE_URL, ProviderConnection
from .providers.presets import PRESETS


class ProviderConnectionForm(forms.ModelForm):
    # A new connection may start from a preset: the page's script fills the fields as it is chosen, and
    # without script the fields left as they were are filled when it is saved.
    preset = forms.ChoiceField(
        label="Start from a preset",
        required=False,
        choices=[("", "None: fill in the fields")] + [(key, preset.label) for key, preset in PRESETS.items()],
        help_text="Fills the kind, the base URL and a model for that provider; change them as you need.",
    )
    # Write-only: the widget never renders a value back, and an empty field keeps the stored key.
    api_key = forms.CharField(
        label="API key",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = ProviderConnection
        fields = [
            "name",
            "provider",
            "api_version",
            "base_url",
            "model",
            "free",
            "max_tokens",
            "temperature",
            "timeout_seconds",
            "max_attempts",
            "rate_limit_per_second",
            "max_concurrent",
            "fallback",
        ]
        labels = {
            "provider": "Kind",
            "free": "Free (a local model)",
            "base_url": "Base URL",
            "max_tokens": "Max tokens",
            "timeout_seconds": "Timeout (seconds)",
            "max_attempts": "Max attempts",
            "rate_limit_per_second": "Rate limit (requests per second)",
            "max_concurrent": "Max calls at once",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.api_key_encrypted:
            self.fields[
                "api_key"
            ].help_text = f"Stored key: {self.instance.key_hint}. Leave empty to keep it; type a new key to replace it."
        else:
            self.fields[
                "api_key"
            ].help_text = "The provider's secret key. It is stored encrypted and never shown again."

        # Offer the models the last "Check connection" found, while still allowing any name. (A view-only
        # admin page builds this form with no editable fields at all.)
        if "model" in self.fields:
            self.fields["model"].widget.attrs["list"] = "available-models"
        if "fallback" in self.fields:
            others = ProviderConnection.objects.order_by("name")
            self.fields["fallback"].queryset = others.exclude(pk=self.instance.pk) if self.instance.pk else others
            self.fields["fallback"].empty_label = (
                "None: a message this connection fails for good is not answered by the bot "
                "(on WhatsApp the customer gets the channel's apology)"
            )
        if self.instance.pk or "provider" not in self.fields:
            del self.fields["preset"]
        else:
            self.order_fields(["name", "preset"])
            self.fields["preset"].widget.attrs["data-presets"] = json.dumps(
                {
                    key: {
                        "provider": p.provider,
                        "base_url": p.base_url,
                        "model": p.model,
                        "free": p.free,
                        "note": p.note,
                    }
                    for key, p in PRESETS.items()
                }
            )

    def clean(self):
        data = super().clean()
        preset = PRESETS.get(data.get("preset") or "")
        if preset:  # fields still at the form's defaults take the preset's values
            data["provider"] = preset.provider
            if data.get("base_url") in (None, "", MISTRAL_BASE_URL):
                data["base_url"] = preset.base_url
            if data.get("model") in (None, "", DEFAULT_MODEL):
                data["model"] = preset.model
            data["free"] = data.get("free") or preset.free
            for field in ("provider", "base_url", "model", "free"):
                setattr(self.instance, field, data[field])
            if not data["model"]:
                self.add_error("model", f"{preset.label} needs the model name it serves. {preset.note}")
        return data

    def clean_api_key(self) -> str:
        key = self.cleaned_data["api_key"]
        if not key and not self.instance.api_key_encrypted:
            raise forms.ValidationError("Enter the provider's API key; a connection cannot call without one.")
        problem = api_key_problem(key) if key else None
        if problem:
            raise forms.ValidationError(problem)
        return key

    def save(self, commit: bool = True) -> ProviderConnection:
        if self.cleaned_data.get("api_key"):
            self.instance.set_api_key(self.cleaned_data["api_key"])
        return super().save(commit)
