"""Every page of the dashboard and the admin, for the tests that visit them all (fuzzing, secrets, phones).

`world` builds one of everything a page can show: a connection, a template, an answered call, an
integration with a callback URL, a WhatsApp channel with a refused message, and a superuser. Its secrets
are canaries that no page may ever print.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from connectors import crypto
from conversations import delivery, services
from conversations.api.tokens import integration_create
from conversations.models import TestCase, TestRun, TestSet, WhatsAppChannel, WhatsAppRefusal
from tests.factories import ConnectionFactory, TemplateFactory
from tests.helpers import wait_for_calls

CANARIES = {
    "api_key": "sk-canary-connection-key-1111",
    "app_secret": "canary-meta-app-secret-2222",
    "access_token": "canary-graph-access-token-3333",
    "password": "canary-user-password-4444",
}


@pytest.fixture
def world(sandbox, django_user_model):
    connection = ConnectionFactory(
        name="Sandbox", base_url=sandbox.base_url, max_attempts=1, api_key=CANARIES["api_key"]
    )
    template = TemplateFactory(name="Support")
    integration, token = integration_create(
        name="Chatbot", templates=[template], connections=[connection], callback_url="http://127.0.0.1:9/hook"
    )
    call = services.call_send(
        connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
    )
    # Run it here; in browser tests a live worker may have claimed it first, so wait for whoever runs it.
    delivery.call_execute(call_id=call.pk)
    wait_for_calls([call])
    channel = WhatsAppChannel.objects.create(
        name="Shop",
        phone_number_id="106540352242922",
        verify_token="verify-me",
        app_secret_encrypted=crypto.encrypt(CANARIES["app_secret"]),
        access_token_encrypted=crypto.encrypt(CANARIES["access_token"]),
        graph_base_url=sandbox.base_url.removesuffix("/v1"),
        template=template,
        connection=connection,
        variables={"business_name": "Acme"},
    )
    WhatsAppRefusal.objects.create(channel=channel, message_id="wamid.BAD", sender="1555", reason="A test refusal.")
    test_set = TestSet.objects.create(name="Smoke")
    TestCase.objects.create(
        test_set=test_set, template=template, variables={"business_name": "Acme"}, turns=["Hi"], expect_contains=["Hi"]
    )
    run = TestRun.objects.create(test_set=test_set, connection=connection, status=TestRun.Status.FINISHED)
    superuser = django_user_model.objects.create_superuser("root", password=CANARIES["password"])
    return {
        "connection": connection,
        "template": template,
        "integration": integration,
        "token": token,
        "callback_secret": crypto.decrypt(integration.callback_secret_encrypted),
        "call": call,
        "conversation": call.conversation,
        "reply": call.conversation.messages.get(role="assistant"),
        "channel": channel,
        "admin": superuser,
        "test_set": test_set,
        "run": run,
    }


def dashboard_pages(world) -> list[str]:
    conversation, call, channel = world["conversation"], world["call"], world["channel"]
    return [
        reverse("conversations:test_send"),
        reverse("conversations:variable_fields"),
        reverse("conversations:calls"),
        reverse("conversations:export_csv"),
        reverse("conversations:export_jsonl"),
        reverse("conversations:call_status", args=[call.pk]),
        reverse("conversations:list"),
        reverse("conversations:detail", args=[conversation.pk]),
        reverse("conversations:overview"),
        reverse("conversations:whatsapp_channels"),
        reverse("conversations:whatsapp_channel", args=[channel.pk]),
        reverse("conversations:whatsapp_simulator", args=[channel.pk]),
        reverse("conversations:whatsapp_messages", args=[channel.pk]),
        reverse("conversations:templates"),
        reverse("conversations:template_new"),
        reverse("conversations:template_edit", args=[world["template"].pk]),
        reverse("conversations:template_compare", args=[world["template"].pk]) + "?a=1&b=1",
        reverse("conversations:testsets"),
        reverse("conversations:testset", args=[world["test_set"].pk]),
        reverse("conversations:testrun", args=[world["run"].pk]),
        reverse("conversations:testrun_compare", args=[world["test_set"].pk])
        + f"?a={world['run'].pk}&b={world['run'].pk}",
        reverse("conversations:case_from_reply", args=[world["reply"].pk]),
        reverse("connectors:list"),
        reverse("connectors:new"),
        reverse("connectors:edit", args=[world["connection"].pk]),
        reverse("conversations:inbox"),
        reverse("conversations:inbox_count"),
        reverse("conversations:integrations"),
        reverse("conversations:integration_new"),
        reverse("conversations:integration_edit", args=[world["integration"].pk]),
        reverse("api:docs"),
        reverse("api:schema"),
        reverse("login"),
    ]


def admin_pages() -> list[str]:
    """Every admin page of every registered model: the list, the add form, and each row's change, history
    and delete pages."""
    pages = [reverse("admin:index")]
    for model in admin.site._registry:
        base = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        pages += [reverse(f"{base}_changelist"), reverse(f"{base}_add")]
        for pk in model._default_manager.values_list("pk", flat=True)[:3]:
            pages += [reverse(f"{base}_{view}", args=[pk]) for view in ("change", "history", "delete")]
    return pages
