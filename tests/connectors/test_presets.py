"""Presets fill a connection for the providers teams use; a local model's calls cost nothing."""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from connectors.forms import ProviderConnectionForm
from connectors.models import ModelPrice, ProviderConnection
from conversations import prices, services
from tests.factories import ConnectionFactory, TemplateFactory
from tests.helpers import execute_now

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("preset", "provider", "base_url", "model"),
    [
        ("groq", "openai", "https://api.groq.com/openai/v1", "llama-3.1-8b-instant"),
        ("anthropic", "anthropic", "https://api.anthropic.com/v1", "claude-haiku-4-5"),
        ("deepseek", "openai", "https://api.deepseek.com/v1", "deepseek-chat"),
    ],
)
def test_add_connection_with_a_preset_fills_kind_url_and_model(preset, provider, base_url, model):
    call_command("add_connection", "P", "--provider", preset, "--api-key", "sk-preset-000000", stdout=StringIO())
    connection = ProviderConnection.objects.get(name="P")
    assert (connection.provider, connection.base_url, connection.model) == (provider, base_url, model)


def test_a_local_server_preset_needs_its_model_name_and_its_host_allowed(settings):
    with pytest.raises(CommandError, match="needs --model"):
        call_command("add_connection", "V", "--provider", "vllm", "--api-key", "x" * 12, stdout=StringIO())
    settings.ALLOWED_PROVIDER_HOSTS = ["127.0.0.1:8765"]  # the sandbox's port only
    with pytest.raises(CommandError, match="ALLOWED_PROVIDER_HOSTS"):
        call_command("add_connection", "O", "--provider", "ollama", "--api-key", "x" * 12, stdout=StringIO())
    settings.ALLOWED_PROVIDER_HOSTS = ["127.0.0.1:8765", "127.0.0.1:11434"]
    call_command("add_connection", "O", "--provider", "ollama", "--api-key", "x" * 12, stdout=StringIO())
    assert ProviderConnection.objects.get(name="O").free


def test_the_form_fills_a_preset_when_saved_without_script():
    form = ProviderConnectionForm(
        data={
            "name": "Claude",
            "preset": "anthropic",
            "provider": "mistral",  # as the page first shows it
            "base_url": "https://api.mistral.ai/v1",
            "model": "mistral-small-latest",
            "api_key": "sk-ant-000000000000",
            "timeout_seconds": "30",
            "max_attempts": "3",
        }
    )
    assert form.is_valid(), form.errors
    saved = form.save()
    assert (saved.provider, saved.base_url, saved.model) == (
        "anthropic",
        "https://api.anthropic.com/v1",
        "claude-haiku-4-5",
    )


def test_an_existing_connection_offers_no_preset():
    assert "preset" not in ProviderConnectionForm(instance=ConnectionFactory()).fields


def test_a_free_connection_costs_nothing_whatever_its_model_is_called(sandbox):
    ModelPrice.objects.update_or_create(
        model="mistral-small-latest",
        defaults={"input_per_million": Decimal("0.1"), "output_per_million": Decimal("0.3")},
    )
    prices.forget()
    template = TemplateFactory()
    calls = {}
    for free in (False, True):
        connection = ConnectionFactory(base_url=sandbox.base_url, free=free)  # a llama.cpp server aliased as Mistral
        call = services.call_send(
            connection=connection, template=template, customer_message="Hi", variables={"business_name": "Acme"}
        )
        calls[free] = execute_now(call.pk)
    assert calls[False].cost_usd > 0
    assert calls[True].cost_usd == 0


@pytest.mark.django_db
def test_a_temperature_the_provider_refuses_is_refused_before_anything_is_sent(client, sandbox):
    """Mistral answers 422 above 1.5, where OpenAI takes up to 2: refused when saved and when sent."""
    from django.core.exceptions import ValidationError

    from conversations import services
    from conversations.api.tokens import integration_create
    from conversations.models import Call
    from tests.factories import ConnectionFactory, TemplateFactory

    mistral = ConnectionFactory(name="Mistral", base_url=sandbox.base_url, provider="mistral")
    openai = ConnectionFactory(name="OpenAI", base_url=sandbox.base_url, provider="openai")
    mistral.temperature = 1.8
    with pytest.raises(ValidationError, match="Mistral's temperature is from 0 to 1.5; 1.8 is not."):
        mistral.full_clean()
    openai.temperature = 1.8
    openai.full_clean()

    template = TemplateFactory()
    with pytest.raises(services.SendRefused, match="from 0 to 1.5"):
        services.call_send(connection=mistral, template=template, customer_message="Hi",
                           variables={"business_name": "A"}, overrides={"temperature": 1.8})  # fmt: skip
    _, token = integration_create(name="Bot", templates=[template], connections=[mistral])
    answer = client.post(
        "/api/v1/chat/completions",
        data={"messages": [{"role": "user", "content": "Hi"}], "temperature": 1.8},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "temperature"
    assert not Call.objects.exists()
