from __future__ import annotations

import factory

from connectors.models import ProviderConnection
from conversations.models import PromptTemplate

TEST_API_KEY = "sb-test-key-7f3a9c2e51d84b06"


class ConnectionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProviderConnection
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Connection {n}")
    base_url = "http://127.0.0.1:9/v1"  # tests pass the sandbox's URL
    model = "mistral-small-latest"
    timeout_seconds = 5.0

    @factory.post_generation
    def api_key(obj, create, extracted, **kwargs):
        obj.set_api_key(TEST_API_KEY if extracted is None else extracted)
        if create:
            obj.save()


class TemplateFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PromptTemplate

    name = factory.Sequence(lambda n: f"Template {n}")
    system_prompt = "You are the support assistant of {{business_name}}. Answer briefly."
    user_message = "{{customer_message}}"
