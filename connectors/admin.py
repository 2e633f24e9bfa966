from __future__ import annotations

from django.contrib import admin, messages

from config.history import HistoryAdmin

from .forms import ProviderConnectionForm
from .models import ModelPrice, ProviderConnection
from .safety import url_save_check


@admin.register(ProviderConnection)
class ProviderConnectionAdmin(HistoryAdmin):
    form = ProviderConnectionForm
    list_display = ["name", "provider", "base_url", "model", "key_hint", "api_key_changed_at", "updated_at"]
    search_fields = ["name", "base_url", "model"]
    readonly_fields = ["key_hint", "api_key_changed_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "provider", "api_version", "base_url"]}),
        ("Key", {"fields": ["api_key", "key_hint", "api_key_changed_at"]}),
        ("Model", {"fields": ["model", "max_tokens", "temperature", "free"]}),
        ("Delivery", {"fields": ["timeout_seconds", "max_attempts", "rate_limit_per_second", "max_concurrent"]}),
        ("When it fails", {"fields": ["fallback"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        _, warning = url_save_check(obj.base_url)
        if warning:
            self.message_user(request, warning, level=messages.WARNING)

    def get_fieldsets(self, request, obj=None):
        """The write-only key field only for those who may write it; everyone else sees the hint."""
        fieldsets = super().get_fieldsets(request, obj)
        if self.has_change_permission(request, obj) or (obj is None and self.has_add_permission(request)):
            return fieldsets
        return [(name, {**opts, "fields": [f for f in opts["fields"] if f != "api_key"]}) for name, opts in fieldsets]

    @admin.display(description="API key")
    def key_hint(self, obj: ProviderConnection) -> str:
        return obj.key_hint


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["model", "input_per_million", "output_per_million", "updated_at"]
    list_editable = ["input_per_million", "output_per_million"]
    search_fields = ["model"]
