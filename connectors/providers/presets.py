"""Presets for the providers support teams use: each fills a new connection's kind, base URL and model.

A preset is a starting point, not a kind of its own: a connection made from one is an ordinary Mistral,
OpenAI-compatible or Anthropic connection whose fields can be changed. Local servers (Ollama, vLLM,
llama.cpp) run inside your network over plain http, so their host must be listed in ALLOWED_PROVIDER_HOSTS
(`host:port`), and their calls are free: a local model is not billed at a hosted model's price.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    label: str
    provider: str  # the wire shape: mistral, openai (chat completions) or anthropic
    base_url: str
    model: str
    free: bool = False  # a local server: calls cost nothing, whatever the model is called
    note: str = ""


PRESETS: dict[str, Preset] = {
    "mistral": Preset("Mistral", "mistral", "https://api.mistral.ai/v1", "mistral-small-latest"),
    "openai": Preset("OpenAI", "openai", "https://api.openai.com/v1", "gpt-4o-mini"),
    "anthropic": Preset("Anthropic", "anthropic", "https://api.anthropic.com/v1", "claude-haiku-4-5"),
    "openrouter": Preset(
        "OpenRouter", "openai", "https://openrouter.ai/api/v1", "mistralai/mistral-small-3.2-24b-instruct"
    ),
    "groq": Preset("Groq", "openai", "https://api.groq.com/openai/v1", "llama-3.1-8b-instant"),
    "together": Preset("Together", "openai", "https://api.together.xyz/v1", "meta-llama/Llama-3.3-70B-Instruct-Turbo"),
    "deepseek": Preset("DeepSeek", "openai", "https://api.deepseek.com/v1", "deepseek-chat"),
    "fireworks": Preset(
        "Fireworks",
        "openai",
        "https://api.fireworks.ai/inference/v1",
        "accounts/fireworks/models/llama-v3p1-8b-instruct",
    ),
    "ollama": Preset(
        "Ollama (local)",
        "openai",
        "http://127.0.0.1:11434/v1",
        "llama3.2",
        free=True,
        note="Ollama ignores the key; enter any text. List 127.0.0.1:11434 in ALLOWED_PROVIDER_HOSTS.",
    ),  # fmt: skip
    "vllm": Preset(
        "vLLM (local)",
        "openai",
        "http://127.0.0.1:8001/v1",
        "",
        free=True,
        note="vLLM listens on port 8000 by default, as the dashboard does: start it with --port 8001. The model is "
        "the name vLLM serves (--served-model-name). List the host:port in ALLOWED_PROVIDER_HOSTS.",
    ),  # fmt: skip
    "llamacpp": Preset(
        "llama.cpp server (local)",
        "openai",
        "http://127.0.0.1:8080/v1",
        "local",
        free=True,
        note="llama-server answers any model name with the model it loaded. List 127.0.0.1:8080 in "
        "ALLOWED_PROVIDER_HOSTS.",
    ),  # fmt: skip
}
