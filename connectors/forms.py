from __future__ import annotations

from django import forms

from .models import ProviderConnection


class ProviderConnectionForm(forms.ModelForm):
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
            "base_url",
            "model",
            "max_tokens",
            "temperature",
            "timeout_seconds",
            "max_attempts",
            "rate_limit_per_second",
            "max_concurrent",
        ]
        labels = {
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

    def clean_api_key(self) -> str:
        key = self.cleaned_data["api_key"]
        if not key and not self.instance.api_key_encrypted:
            raise forms.ValidationError("Enter the provider's API key; a connection cannot call without one.")
        return key

    def save(self, commit: bool = True) -> ProviderConnection:
        if self.cleaned_data.get("api_key"):
            self.instance.set_api_key(self.cleaned_data["api_key"])
        return super().save(commit)
