from __future__ import annotations

from django.contrib import admin, messages
from django.db import models

from config.history import HistoryAdmin
from connectors.safety import url_save_check

from .forms import PrintableJSONField, WhatsAppChannelForm
from .models import (
    Call,
    CallbackAttempt,
    Conversation,
    Integration,
    Message,
    Outbound,
    PromptTemplate,
    WhatsAppChannel,
    WhatsAppRefusal,
    WhatsAppSend,
)


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "placeholder_list", "updated_at"]
    search_fields = ["name", "system_prompt", "user_message"]
    readonly_fields = ["placeholder_list", "created_at", "updated_at"]

    @admin.display(description="Placeholders")
    def placeholder_list(self, obj: PromptTemplate) -> str:
        return ", ".join(f"{{{{{name}}}}}" for name in obj.placeholders) or "none"


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    readonly_fields = ["role", "content", "created_at"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(admin.ModelAdmin):
    """Logs are a record: staff read them here, only the application writes them."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ["id", "contact", "connection", "template", "created_at", "updated_at"]
    list_filter = ["connection", "template"]
    search_fields = ["contact"]
    inlines = [MessageInline]


@admin.register(Call)
class CallAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "status",
        "connection",
        "model",
        "attempt",
        "http_status",
        "error_kind",
        "latency_ms",
        "prompt_tokens",
        "completion_tokens",
        "queued_at",
    ]
    list_filter = ["status", "error_kind", "connection"]
    search_fields = ["conversation__contact", "reply_text", "error_message"]
    list_select_related = ["connection"]
    show_full_result_count = False  # no COUNT(*) over the whole log on every page


@admin.register(Integration)
class IntegrationAdmin(HistoryAdmin):
    """The token is made when an integration is created and shown once, in the confirmation message. The
    dashboard's Integrations page also rotates tokens and signing secrets, and disables integrations."""

    list_display = [
        "name",
        "is_active",
        "token_hint",
        "default_connection",
        "callback_url",
        "created_at",
        "last_used_at",
    ]
    filter_horizontal = ["templates", "connections"]
    readonly_fields = ["token_hint", "token_changed_at", "callback_secret_changed_at", "created_at", "last_used_at"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)

        class IntegrationAdminForm(form):
            # As the dashboard's form: the API would otherwise call through a connection the integration may
            # not use.
            def clean(self):
                data = super().clean()
                default, allowed = data.get("default_connection"), data.get("connections")
                if default and allowed is not None and default not in allowed:
                    self.add_error(
                        "default_connection", "The default connection must be one of the connections it may use."
                    )
                return data

        return IntegrationAdminForm

    def save_model(self, request, obj, form, change):
        from django.utils import timezone

        from connectors import crypto

        from .api.tokens import new_callback_secret, new_token

        token = ""
        if not change:
            token, obj.token_hash, obj.token_hint = new_token()
            obj.token_changed_at = timezone.now()
        new_secret = bool(obj.callback_url) and not obj.callback_secret_encrypted
        if new_secret:
            obj.callback_secret_encrypted = new_callback_secret()
            obj.callback_secret_changed_at = timezone.now()
        super().save_model(request, obj, form, change)
        # Shown once, in the answer to this request (response_add / response_change), never in a message:
        # Django's messages travel in a cookie, signed but readable.
        secret = crypto.decrypt(obj.callback_secret_encrypted) if new_secret else ""
        request.shown_once = {"token": token, "secret": secret}
        _warn_unresolved(self, request, obj.callback_url)

    def response_add(self, request, obj, post_url_continue=None):
        return self._shown_once(request, obj) or super().response_add(request, obj, post_url_continue)

    def response_change(self, request, obj):
        return self._shown_once(request, obj) or super().response_change(request, obj)

    def _shown_once(self, request, obj):
        from .api.pages import shown_once

        secrets = getattr(request, "shown_once", None)
        if secrets and (secrets["token"] or secrets["secret"]):
            return shown_once(request, obj, token=secrets["token"], secret=secrets["secret"])
        return None


@admin.register(CallbackAttempt)
class CallbackAttemptAdmin(ReadOnlyAdmin):
    list_display = ["call", "attempt", "url", "http_status", "error", "latency_ms", "created_at"]


@admin.register(WhatsAppChannel)
class WhatsAppChannelAdmin(admin.ModelAdmin):
    """Meta's app secret and access token are write-only here, as a connection's API key is: required for a new
    channel, kept when left empty on a change, never shown."""

    form = WhatsAppChannelForm
    list_display = ["name", "phone_number_id", "template", "connection", "graph_base_url", "created_at"]
    formfield_overrides = {models.JSONField: {"form_class": PrintableJSONField}}
    fieldsets = [
        (None, {"fields": ["name", "phone_number_id", "verify_token", "app_secret", "access_token"]}),
        ("Answers", {"fields": ["template", "connection", "variables", "burst_seconds"]}),
        (
            "Handing over to a person",
            {"fields": ["handover_keywords", "handover_text", "handover_marker", "apology_text"]},
        ),
        (
            "Opting out, and what is not text",
            {"fields": ["stop_keywords", "start_keywords", "opted_out_text", "opted_in_text", "not_text_reply"]},
        ),
        ("Meta's Graph API", {"fields": ["graph_base_url", "graph_version"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if self.has_change_permission(request, obj) or (obj is None and self.has_add_permission(request)):
            return fieldsets
        secrets = {"app_secret", "access_token"}  # a view-only page has no write-only fields
        return [(name, {**opts, "fields": [f for f in opts["fields"] if f not in secrets]}) for name, opts in fieldsets]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        _warn_unresolved(self, request, obj.graph_base_url)


@admin.register(WhatsAppSend)
class WhatsAppSendAdmin(ReadOnlyAdmin):
    list_display = ["call", "attempt", "http_status", "message_id", "error_code", "error", "created_at"]


@admin.register(WhatsAppRefusal)
class WhatsAppRefusalAdmin(ReadOnlyAdmin):
    list_display = ["channel", "message_id", "sender", "reason", "created_at"]
    list_filter = ["channel"]


def _warn_unresolved(model_admin: admin.ModelAdmin, request, url: str) -> None:
    """A URL saved although its name does not resolve yet: say so (it is checked before each request)."""
    _, warning = url_save_check(url) if url else (None, None)
    if warning:
        model_admin.message_user(request, warning, level=messages.WARNING)


@admin.register(Outbound)
class OutboundAdmin(ReadOnlyAdmin):
    """Every message going out (callbacks, WhatsApp replies) and where its delivery stands."""

    list_display = ["id", "kind", "status", "tries", "call", "created_at", "finished_at", "last_error"]
    list_filter = ["kind", "status"]
    show_full_result_count = False
