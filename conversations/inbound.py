"""Customer messages that arrive through `/api/v1/messages`, and what the API says about a call (the
drop-in endpoint's requests are read in `api/chat.py`).

Everything is checked before anything is written, so a refused request leaves nothing half-created.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, close_old_connections, transaction

from config.errors import service_unavailable
from connectors.models import ProviderConnection

from . import services, store, wakeup
from .contacts import ContactRefused, contact_from_api
from .models import Call, Conversation, IdempotencyKey, Integration, PromptTemplate
from .payloads import printable, unstorable
from .rendering import PLACEHOLDER_NAME as VARIABLE_NAME
from .support.services import bot_answers


@dataclass
class Refused(Exception):
    """A request the API answers with 4xx: which field, what is wrong, how to fix it."""

    status: int
    field: str
    message: str
    code: str = ""  # a stable code where the answer has one (OpenAI's model_not_found); else by status


def checked_contact(text: str, field: str) -> str:
    try:
        return contact_from_api(text)
    except ContactRefused as refused:
        raise Refused(400, field, str(refused)) from None


def checked_text(value: Any, field: str, limit: int | None = None, example: str = "") -> str:
    """A string field: text the database can store (no NUL, no lone surrogate), at most `limit` characters."""
    if not isinstance(value, str) or not value.strip():
        raise Refused(400, field, f'"{field}" must be non-empty text{example}.')
    problem = unstorable(value)
    if problem:
        raise Refused(400, field, f'"{field}" {problem}.')
    if limit and len(value) > limit:
        raise Refused(400, field, f'"{field}" is {len(value)} characters; at most {limit}.')
    return value


def _allowed_template(integration: Integration, name: Any) -> PromptTemplate:
    name = checked_text(name, "template", 100, ', the name of a template, e.g. "Support bot"')
    template = store.template_allowed(integration, name)
    if template is None:
        allowed = ", ".join(integration.templates.values_list("name", flat=True)) or "none yet"
        raise Refused(
            422,
            "template",
            f"Unknown template {name!r} for this integration. Allowed: {allowed}. "
            "An admin can allow more templates on the integration.",
        )
    return template


def allowed_connection(integration: Integration, name: Any) -> ProviderConnection:
    if name in (None, ""):
        # `default_allowed` comes with the token's read (store.integration_by_token).
        if integration.default_connection_id and not getattr(integration, "default_allowed", True):
            raise Refused(
                422,
                "connection",
                f"This integration's default connection, {integration.default_connection.name!r}, is no longer one "
                'it may use: name one in "connection". An Admin can allow it again or choose another default on '
                "the integration's page.",
            )
        if integration.default_connection_id:
            return integration.default_connection
        raise Refused(422, "connection", 'This integration has no default connection; name one in "connection".')
    name = checked_text(name, "connection", 100, ", the name of a connection")
    connection = integration.connections.filter(name=name).first()
    if connection is None:
        allowed = ", ".join(integration.connections.values_list("name", flat=True)) or "none yet"
        if ProviderConnection.objects.filter(name=name).exists():
            raise Refused(
                422,
                "connection",
                f"{name!r} is a connection this integration may not use. Allowed: {allowed}. An Admin can allow "
                "it on the integration's page.",
            )
        raise Refused(422, "connection", f"Unknown connection {name!r} for this integration. Allowed: {allowed}.")
    return connection


def _variables(value: Any) -> dict[str, str]:
    """Names as templates write them ({{business_name}}) to text; a number is taken as its text. true, false,
    null, lists and objects are refused by name: a template would print them as "True" or "None"."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Refused(
            400, "variables", '"variables" must be an object of names to text, e.g. {"business_name": "Acme"}.'
        )
    variables = {}
    for name, item in value.items():
        if not VARIABLE_NAME.fullmatch(name):
            raise Refused(
                400,
                f"variables.{printable(name)[:60]}",
                f"{printable(name)[:60]!r} is not a variable name: templates name variables with letters, digits "
                "and underscores, not starting with a digit, e.g. business_name.",
            )
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise Refused(
                400,
                f"variables.{name}",
                f'"variables.{name}" is {json.dumps(item)[:40]}; a variable is text (or a number), '
                'e.g. {"business_name": "Acme"}.',
            )
        variables[name] = checked_text(str(item), f"variables.{name}", 10_000)
    return variables


MESSAGE_FIELDS = ("template", "contact", "message", "variables", "connection", "wait", "message_id")


def _fingerprint(payload: dict[str, Any]) -> str:
    """What makes two requests the same message: the body, less `wait` (how long to wait for the answer)."""
    same = {k: v for k, v in payload.items() if k != "wait"}
    return hashlib.sha256(json.dumps(same, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _request_keys(payload: dict[str, Any], idempotency_key: str) -> list[tuple[str, str]]:
    keys = []
    if idempotency_key:
        keys.append((IdempotencyKey.Kind.HEADER, checked_text(idempotency_key, "Idempotency-Key", 200)))
    if payload.get("message_id") is not None:
        message_id = checked_text(payload["message_id"], "message_id", 200, ", your platform's id for the message")
        keys.append((IdempotencyKey.Kind.MESSAGE_ID, message_id))
    return keys


@dataclass
class Accepted:
    """What became of a customer message sent through the API: the call that answers it, or, in a
    conversation held by a person, no call (`human`); and whether it repeats an earlier request."""

    conversation_id: int
    message_id: int
    call: Call | None
    repeated: bool = False

    @property
    def human(self) -> bool:
        return self.call is None


def _earlier(integration: Integration, keys: list[tuple[str, str]], fingerprint: str) -> Accepted | None:
    """What a repeated key made, or None; a key first used with another body is refused (422)."""
    for kind, key in keys:
        earlier = IdempotencyKey.objects.filter(integration=integration, kind=kind, key=key)
        earlier = earlier.select_related("call", "message").first()
        if earlier is None:
            continue
        if earlier.request_hash and earlier.request_hash != fingerprint:
            label = "Idempotency-Key" if kind == IdempotencyKey.Kind.HEADER else "message_id"
            raise Refused(
                422,
                label,
                f"{label} {key!r} was first used with a different body "
                f"({f'call {earlier.call_id}' if earlier.call_id else f'message {earlier.message_id}'}). Send the "
                f"same body to get that result again, or a new {label} for a new message.",
            )
        if earlier.call_id:
            return Accepted(earlier.call.conversation_id, earlier.call.message_id, earlier.call, repeated=True)
        return Accepted(earlier.message.conversation_id, earlier.message_id, None, repeated=True)
    return None


def message_receive(*, integration: Integration, payload: dict[str, Any], idempotency_key: str = "") -> Accepted:
    """Queue the answer to one customer message, or only store it when a person holds the conversation; and
    tell a repeat of an earlier request (the same Idempotency-Key or message_id with the same body)."""
    unknown = sorted(set(payload) - set(MESSAGE_FIELDS))
    if unknown:
        raise Refused(
            400,
            printable(unknown[0]),
            f"Unknown field {printable(unknown[0])!r}. The fields are: {', '.join(MESSAGE_FIELDS)}.",
        )
    keys = _request_keys(payload, idempotency_key)
    fingerprint = _fingerprint(payload) if keys else ""  # only a repeated key compares bodies
    earlier = _earlier(integration, keys, fingerprint) if keys else None
    if earlier is not None:
        return earlier
    template = _allowed_template(integration, payload.get("template"))
    connection = allowed_connection(integration, payload.get("connection"))
    contact = checked_contact(
        checked_text(payload.get("contact"), "contact", 200, ": who the customer is, e.g. their WhatsApp number"),
        "contact",
    )
    message = payload.get("message")
    if not isinstance(message, str):
        raise Refused(400, "message", 'Put the customer\'s text in "message" as a string.')
    variables = _variables(payload.get("variables"))
    try:
        with transaction.atomic():
            store.contact_lock(integration, contact)
            conversation = store.conversation_latest(integration, contact, template, connection)
            if conversation is None:
                call = services.call_send(
                    connection=connection,
                    template=template,
                    customer_message=message,
                    variables=variables,
                    contact=contact,
                    integration=integration,
                )
                accepted = Accepted(call.conversation_id, call.message_id, call)
            else:
                if variables and variables != conversation.variables:
                    # New values (another business name, new hours) change the system prompt from now on.
                    conversation.system_prompt, _ = template.render(variables=variables, customer_message=message)
                    conversation.variables = variables
                    conversation.save(update_fields=["variables", "system_prompt"])
                accepted = _continue(conversation, message)
            IdempotencyKey.objects.bulk_create(
                IdempotencyKey(
                    integration=integration,
                    kind=kind,
                    key=key,
                    request_hash=fingerprint,
                    call=accepted.call,
                    message_id=accepted.message_id,
                )
                for kind, key in keys
            )
    except services.TemplateVariableError as error:
        raise Refused(422, "variables", str(error)) from None
    except services.SendRefused as error:
        raise Refused(413 if "limit is" in str(error) else 400, "message", str(error)) from None
    except IntegrityError:  # the same key raced in twice: the other request made the call
        earlier = _earlier(integration, keys, fingerprint)
        if earlier is None:
            raise
        return earlier
    return accepted


def _continue(conversation: Conversation, text: str) -> Accepted:
    """The next message of a conversation: the bot answers it, unless a person holds the conversation."""
    if bot_answers(conversation):
        call = services.conversation_reply(conversation=conversation, customer_message=text)
        return Accepted(conversation.pk, call.message_id, call)
    services.check_message(text)
    message = services.message_add(conversation, text)
    conversation.last_customer_at = message.created_at
    conversation.save(update_fields=["last_customer_at", "updated_at"])
    return Accepted(conversation.pk, message.pk, None)


def wait_for(call: Call, seconds: float, *, fresh: bool = False) -> Call:
    """The call's newest attempt once it has finished, or as last seen after `seconds`.

    `fresh`: the caller has just queued the call, so it is known unfinished and the first look is skipped (a
    ring that came meanwhile is kept, so the wait returns at once).
    A database that is briefly away while waiting is waited for too: the message is already committed.
    """
    deadline = time.monotonic() + max(0.0, seconds)
    latest = call
    look = not fresh
    while True:
        if look:
            try:
                latest = store.latest_attempt(call)
            except Exception as error:
                if not service_unavailable(error):
                    raise
                close_old_connections()
        look = True
        remaining = deadline - time.monotonic()
        if latest.finished or remaining <= 0:
            return latest
        if settings.API_WAIT_WAKEUP:
            # The worker rings when an attempt's outcome is committed; the last attempt's ring carries its row.
            rung = wakeup.wait(call, remaining)
            if rung is not None:
                return rung
        else:
            time.sleep(0.02)  # the old poll, kept to measure the wake-up against (make bench)


def call_outcome(call: Call) -> dict[str, Any]:
    """What the API says about an attempt (callers pass the newest: `store.latest_attempt`): status, reply or
    error (with cause and fix), usage, latency."""
    outcome: dict[str, Any] = {
        "call_id": call.pk,
        "conversation_id": call.conversation_id,
        "status": call.status,
        "attempt": call.attempt,
        "reply": call.reply_text if call.status == Call.Status.SUCCEEDED else None,
        "model": call.model,
        "usage": {"prompt_tokens": call.prompt_tokens, "completion_tokens": call.completion_tokens},
        "latency_ms": call.latency_ms,
        "error": None,
    }
    if call.status == Call.Status.FAILED:
        outcome["error"] = {
            "kind": call.error_kind,
            "http_status": call.http_status,
            "message": call.error_message,
            "cause": call.help.cause,
            "fix": call.help.fix,
        }
    return outcome
