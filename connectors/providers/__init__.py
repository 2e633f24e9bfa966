"""The wire shapes Switchboard speaks to providers: one adapter per shape, chosen by a connection's kind.

- Chat completions (Mistral, OpenAI and every OpenAI-compatible server): connectors/chat_completions.py.
- Anthropic's Messages API: anthropic.py.

Every adapter does the same three things for the rest of Switchboard: `body` builds what is sent (stored on
the call as its request; the key is never in it), `chat` sends it and returns a ChatReply or raises a
ProviderError of the right kind, and `models` lists what the key may use. presets.py fills a new
connection's base URL and model for the providers support teams use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from .. import chat_completions
from ..chat_completions import ChatReply
from ..errors import ErrorKind, ProviderError

if TYPE_CHECKING:
    from ..models import ProviderConnection


class Adapter(Protocol):
    url: str  # where a chat is sent, for showing staff

    def temperature_problem(self, temperature: float | None) -> str | None: ...

    def body(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> dict[str, Any]: ...

    def chat(self, *, api_key: str, body: dict[str, Any], timeout: float) -> ChatReply: ...

    def models(self, *, api_key: str, timeout: float) -> list[str]: ...


# The highest temperature each kind takes: Mistral answers 422 above 1.5; OpenAI and compatibles take 0 to 2.
MAX_TEMPERATURE = {"mistral": 1.5, "openai": 2.0}
PROVIDER_NAMES = {"mistral": "Mistral", "openai": "OpenAI"}


class ChatCompletions:
    """`POST {base}/chat/completions` with `Authorization: Bearer KEY` (Mistral, OpenAI and compatibles).

    Only `model`, `messages`, and `max_tokens` and `temperature` when set are sent: Mistral refuses every field
    it does not know with a 422, so nothing OpenAI-only is ever added."""

    def __init__(self, base_url: str, provider: str = "mistral"):
        self.base_url = base_url
        self.provider = provider
        self.url = f"{base_url.rstrip('/')}/chat/completions"

    def temperature_problem(self, temperature: float | None) -> str | None:
        highest = MAX_TEMPERATURE.get(self.provider, 2.0)
        if temperature is None or 0 <= temperature <= highest:
            return None
        name = PROVIDER_NAMES.get(self.provider, self.provider)
        return (
            f"{name}'s temperature is from 0 to {highest:g}; {temperature:g} is not. Choose one in that range, or none."
        )

    def body(self, *, model, messages, max_tokens=None, temperature=None) -> dict[str, Any]:
        problem = self.temperature_problem(temperature)
        if problem:
            raise ProviderError(ErrorKind.CONFIG, f"{problem} Nothing was sent.")
        return chat_completions.build_body(
            model=model, messages=messages, max_tokens=max_tokens, temperature=temperature
        )

    def chat(self, *, api_key: str, body: dict[str, Any], timeout: float) -> ChatReply:
        return chat_completions.chat(base_url=self.base_url, api_key=api_key, body=body, timeout=timeout)

    def models(self, *, api_key: str, timeout: float) -> list[str]:
        return chat_completions.list_models(base_url=self.base_url, api_key=api_key, timeout=timeout)


def adapter_for(connection: ProviderConnection) -> Adapter:
    from . import anthropic

    if connection.provider == "anthropic":
        return anthropic.Messages(connection.base_url, connection.api_version or anthropic.DEFAULT_VERSION)
    return ChatCompletions(connection.base_url, connection.provider)
