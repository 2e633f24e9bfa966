from django.urls import path, re_path

from . import docs, openai_compat, views

app_name = "api"

urlpatterns = [
    path("v1/messages", views.messages, name="messages"),
    path("v1/calls/<int:pk>", views.call_status, name="call"),
    path("v1/chat/completions", openai_compat.chat_completions, name="chat_completions"),
    path("v1/models", openai_compat.models, name="models"),
    path("schema/", docs.schema, name="schema"),
    path("docs/", docs.docs, name="docs"),
    re_path(r"^v1/", views.not_found),  # JSON, never an HTML page, for any other /api/v1 address
    re_path(r"^v1$", views.not_found),  # and without its slash: never a redirect that turns a POST into a GET
]
