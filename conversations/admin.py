from __future__ import annotations

from django.contrib import admin

from .models import Call, Conversation, Message, PromptTemplate


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
