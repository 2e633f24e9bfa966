from __future__ import annotations

import pytest

from conversations.api.tokens import integration_create
from tests.factories import ConnectionFactory, TemplateFactory


@pytest.fixture
def integration_token(sandbox):
    """An integration allowed one template ("Support") and one connection ("Sandbox"), and its token."""
    connection = ConnectionFactory(name="Sandbox", base_url=sandbox.base_url, max_attempts=1)
    template = TemplateFactory(name="Support")
    integration, token = integration_create(name="Chatbot", templates=[template], connections=[connection])
    return integration, token


def auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}
