"""The API's OpenAPI 3.1 document (`/api/schema/`) and a readable page made from it (`/api/docs/`)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from .chat import MESSAGES_MAX

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["field", "message"],
            "properties": {
                "field": {"type": "string", "description": "The field at fault."},
                "message": {"type": "string", "description": "What is wrong and how to fix it."},
                "type": {"type": "string", "description": "OpenAI's error type, e.g. invalid_request_error."},
                "param": {"type": ["string", "null"], "description": "The field, as OpenAI's SDKs read it."},
                "code": {"type": "string", "description": "A stable code, e.g. model_not_found or auth."},
            },
        }
    },
}
OUTCOME = {
    "type": "object",
    "required": ["call_id", "conversation_id", "status"],
    "properties": {
        "call_id": {"type": ["integer", "null"], "description": "null when a person holds the conversation"},
        "conversation_id": {"type": "integer"},
        "message_id": {"type": "integer", "description": "The stored customer message (status human)"},
        "status": {
            "type": "string",
            "enum": ["queued", "running", "succeeded", "failed", "human"],
            "description": "human: a person of the team holds the conversation; no provider call was made, and "
            "their reply reaches the callback URL (event message.staff).",
        },
        "attempt": {"type": "integer"},
        "reply": {"type": ["string", "null"], "description": "The assistant's answer, once succeeded."},
        "model": {"type": "string"},
        "usage": {
            "type": "object",
            "properties": {
                "prompt_tokens": {"type": ["integer", "null"]},
                "completion_tokens": {"type": ["integer", "null"]},
            },
        },
        "latency_ms": {"type": ["integer", "null"]},
        "error": {"type": ["object", "null"], "description": "kind, http_status, message, cause and fix"},
        "status_url": {"type": "string"},
        "idempotent_replay": {"type": "boolean"},
    },
}
MESSAGE_REQUEST = {
    "type": "object",
    "required": ["template", "contact", "message"],
    "properties": {
        "template": {
            "type": "string",
            "description": "Name of a template this integration may use.",
            "example": "Support bot",
        },
        "contact": {
            "type": "string",
            "description": "Who the customer is; their conversation continues. A phone number with + and its "
            "country code (stored as E.164, so it meets the same number's WhatsApp conversation), or your "
            "platform's user id. A number formatted without a country code, such as (650) 555-0100, is a 400.",
            "example": "+16505551234",
        },
        "message": {
            "type": "string",
            "description": "What the customer wrote.",
            "example": "Do you deliver on Sundays?",
        },
        "variables": {
            "type": "object",
            "description": "Values for the template's {{variables}}; a number is used as its text.",
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
            "additionalProperties": {"type": ["string", "number"]},
            "example": {"business_name": "Acme"},
        },
        "connection": {"type": "string", "description": "Connection name; the integration's default otherwise."},
        "wait": {"type": "number", "minimum": 0, "maximum": 30, "description": "Seconds to wait for the reply."},
        "message_id": {
            "type": "string",
            "minLength": 1,
            "maxLength": 200,
            "description": "Your platform's id for the message, unique per integration: a repeat with the same "
            "body returns the first result (as Idempotency-Key does); with another body it is a 422.",
        },
    },
    "additionalProperties": False,
}
MESSAGE_EXAMPLE = {
    "template": "Support bot",
    "contact": "+16505551234",
    "message": "Do you deliver on Sundays?",
    "variables": {"business_name": "Acme Bikes", "opening_hours": "9-17"},
    "wait": 10,
}
CHAT_EXAMPLE = {
    "messages": [
        {"role": "system", "content": "You answer for Acme Bikes, briefly."},
        {"role": "user", "content": "Do you deliver on Sundays?"},
    ],
    "user": "+16505551234",
}
CHAT_REQUEST = {
    "type": "object",
    "required": ["messages"],
    "properties": {
        "model": {
            "type": "string",
            "maxLength": 200,
            "description": "A connection name, or a model for the default connection.",
        },
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": MESSAGES_MAX,
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                    "content": {
                        "description": "Text, or a list of text parts as OpenAI's SDKs send them.",
                        "oneOf": [
                            {"type": "string", "minLength": 1},
                            {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["type", "text"],
                                    "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                                },
                            },
                        ],
                    },
                },
            },
        },
        "temperature": {"type": "number"},
        "max_tokens": {"type": "integer", "minimum": 1},
        "user": {"type": ["string", "null"], "description": "The customer, for the conversation log."},
        "stream": {"type": ["boolean", "null"], "description": "Server-sent events in OpenAI's chunk format."},
        "stream_options": {
            "type": ["object", "null"],
            "properties": {"include_usage": {"type": ["boolean", "null"]}},
        },
        "n": {"type": ["integer", "null"], "minimum": 1, "maximum": 1, "description": "One choice is answered."},
    },
    "description": "Other OpenAI fields (top_p, stop, seed, the penalties, logprobs…) are taken and not sent; tools, "
    "functions and JSON response formats are refused (400), as the reply would not be what they ask for.",
}


def _json(schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    """A JSON body. With an example, "Try it out" starts from a request that works as it is, rather than
    one built from the schema (which would fill every optional field with "string")."""
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"content": {"application/json": media}}


def openapi() -> dict[str, Any]:
    errors = {
        "400": {"description": "Malformed input: the field and the fix", **_json(ERROR)},
        "401": {"description": "Missing or wrong token, or a disabled integration", **_json(ERROR)},
        "405": {"description": "Another HTTP method than the one documented", **_json(ERROR)},
        "413": {"description": "A body over API_MAX_BODY_BYTES", **_json(ERROR)},
        "503": {
            "description": "The database or the broker is briefly away: retry after Retry-After seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            **_json(ERROR),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchboard API",
            "version": "1",
            "description": "Send customer messages through Switchboard's templates, connections, retries and logs.",
        },
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "The integration's token, sb_…"}
            }
        },
        "security": [{"token": []}],
        "paths": {
            "/api/v1/messages": {
                "post": {
                    "summary": "Answer a customer message",
                    "description": "Renders the template and continues the contact's conversation (recent history "
                    "is sent); "
                    "queues the call, and returns the reply within `wait` seconds, or 202 with a status URL. "
                    "Send `Idempotency-Key` to make a retry of the same request return the first result.",
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                            "description": "A key unique to this message; an empty one, or one holding a comma "
                            "(two headers), is refused (400).",
                        }
                    ],
                    "requestBody": {"required": True, **_json(MESSAGE_REQUEST, MESSAGE_EXAMPLE)},
                    "responses": {
                        "200": {
                            "description": "Answered, or status human: a person holds the conversation",
                            **_json(OUTCOME),
                        },
                        "202": {"description": "Queued; poll status_url", **_json(OUTCOME)},
                        "422": {
                            "description": "Unknown template or connection, a missing variable, or an "
                            "Idempotency-Key or message_id first used with another body",
                            **_json(ERROR),
                        },
                        "502": {"description": "The provider failed; see error.cause and error.fix", **_json(OUTCOME)},
                        **errors,
                    },
                }
            },
            "/api/v1/calls/{id}": {
                "get": {
                    "summary": "A call's status and reply",
                    "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}],
                    "responses": {
                        "200": {"description": "The call", **_json(OUTCOME)},
                        "404": {"description": "No such call for this integration", **_json(ERROR)},
                        **errors,
                    },
                }
            },
            "/api/v1/chat/completions": {
                "post": {
                    "summary": "Drop-in chat completions (OpenAI and Mistral shape)",
                    "description": "Point an OpenAI or Mistral client at `/api/v1`, the integration token as its key. "
                    "The call is logged, retried and falls back like any other. With `stream: true` the answer "
                    "is server-sent events in OpenAI's chunk format, ending with `data: [DONE]`. Statuses are "
                    "chosen so that an SDK never retries what a retry cannot fix: 4xx for the request, 502 with "
                    "`x-should-retry: false` for Switchboard's own connection, 503 with Retry-After for a "
                    "transient failure.",
                    "requestBody": {"required": True, **_json(CHAT_REQUEST, CHAT_EXAMPLE)},
                    "responses": {
                        "200": {
                            "description": "choices[0].message.content holds the reply; with stream, "
                            "text/event-stream chunks whose delta.content carry it",
                        },
                        "400": {
                            "description": "Malformed input, or the provider refused the request itself "
                            "(code context_length_exceeded: the conversation is longer than the model takes)",
                            **_json(ERROR),
                        },
                        "404": {
                            "description": "model names a connection this integration may not use, or a model "
                            "the provider does not offer (code model_not_found)",
                            **_json(ERROR),
                        },
                        "502": {
                            "description": "Switchboard's connection failed for good (its key, model or "
                            "configuration): error.message has the cause and the fix; x-should-retry: false",
                            **_json(ERROR),
                        },
                        **{k: v for k, v in errors.items() if k not in ("400", "503")},
                        "503": {
                            "description": "The provider is failing for now (after Switchboard's retries and "
                            "fallbacks), no reply in time (the call stays queued), or the database or broker is "
                            "away: retry after Retry-After seconds",
                            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                            **_json(ERROR),
                        },
                    },
                }
            },
            "/api/v1/models": {
                "get": {
                    "summary": "What `model` may name (OpenAI shape)",
                    "description": "Each connection the integration may use, by name, then the models of its default "
                    "connection. OpenAI's `client.models.list()` and chat tools read it.",
                    "responses": {
                        "200": {"description": "object list; data[].id is a connection or model name"},
                        **{k: v for k, v in errors.items() if k in ("401", "405", "503")},
                    },
                }
            },
        },
    }


# Read-only pages: any other method is a 405 that names GET (csrf_exempt so a POST is told that, not
# about a missing CSRF cookie; nothing here changes anything).
@csrf_exempt
@require_safe
def schema(request: HttpRequest) -> JsonResponse:
    return JsonResponse(openapi())


@csrf_exempt
@require_safe
def docs(request: HttpRequest) -> HttpResponse:
    """The reference page: Swagger UI (vendored) reading /api/schema/, so the page and the document never differ."""
    return render(request, "api/docs.html", {"spec": openapi()})
