"""The sandbox's stand-in for the WhatsApp Cloud API send endpoint (Meta's Graph API), for offline demos and tests.

`POST /{version}/{phone-number-id}/messages` with `Authorization: Bearer TOKEN` answers like Meta: the message id
on success, `{"error": {..., "code": N}}` otherwise (a token starting with `wrong` gets code 190, a body over
4,096 characters code 100). What was sent is kept in memory; `GET /_sandbox/whatsapp/outbox?to=WA_ID` lists it,
so a test or the simulated customer page can see what reached the phone.

A read receipt (`"status": "read"`, with `"typing_indicator": {"type": "text"}` or without) answers
`{"success": true}` as Meta does; `GET /_sandbox/whatsapp/reads` lists the receipts.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from typing import Any

SEND_PATH = re.compile(r"^/v\d+\.\d+/(\d+)/messages$")
_outbox: list[dict[str, Any]] = []
_reads: list[dict[str, Any]] = []
_lock = threading.Lock()


def _graph_error(status: int, code: int, message: str, details: str = "") -> tuple[int, dict[str, Any]]:
    error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": uuid.uuid4().hex[:22]}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return status, {"error": error}


def send(phone_number_id: str, authorization: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    token = authorization.removeprefix("Bearer ").strip()
    if not token or token.startswith("wrong"):
        return _graph_error(401, 190, "Error validating access token: Session has expired.")
    try:
        body = json.loads(raw)
    except ValueError:
        return _graph_error(400, 100, "Invalid parameter", "The request body is not JSON.")
    if not isinstance(body, dict):
        return _graph_error(400, 100, "Invalid parameter", "The request body is not a JSON object.")
    if body.get("status") == "read":
        return _read(phone_number_id, body)
    if body.get("messaging_product") != "whatsapp" or not body.get("to"):
        return _graph_error(400, 100, "Invalid parameter", "messaging_product must be whatsapp and to is required.")
    text = (body.get("text") or {}).get("body", "")
    if body.get("type") != "text" or not text:
        return _graph_error(400, 131009, "Parameter value is not valid", "Only text messages with a body here.")
    if len(text) > 4096:
        return _graph_error(400, 100, "Invalid parameter", "text.body is longer than 4096 characters.")
    wamid = f"wamid.SANDBOX{uuid.uuid4().hex.upper()}"
    with _lock:
        _outbox.append(
            {
                "id": wamid,
                "to": body["to"],
                "from": phone_number_id,
                "body": text,
                "context": (body.get("context") or {}).get("message_id"),
                "at": time.time(),
            }
        )
    return 200, {
        "messaging_product": "whatsapp",
        "contacts": [{"input": body["to"], "wa_id": body["to"]}],
        "messages": [{"id": wamid}],
    }


def _read(phone_number_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    message_id, typing = body.get("message_id"), body.get("typing_indicator")
    if body.get("messaging_product") != "whatsapp" or not isinstance(message_id, str) or not message_id:
        return _graph_error(
            400, 100, "Invalid parameter", "messaging_product must be whatsapp and message_id is required."
        )
    if typing is not None and typing != {"type": "text"}:
        return _graph_error(400, 100, "Invalid parameter", 'typing_indicator must be {"type": "text"}.')
    with _lock:
        _reads.append(
            {"message_id": message_id, "typing": typing is not None, "to": phone_number_id, "at": time.time()}
        )
    return 200, {"success": True}


def reads() -> list[dict[str, Any]]:
    with _lock:
        return list(_reads)


def outbox(to: str | None) -> list[dict[str, Any]]:
    with _lock:
        return [m for m in _outbox if to is None or m["to"] == to]
