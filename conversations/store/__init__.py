"""The hot path's trips to the database: one hand-written statement each on PostgreSQL, the ORM elsewhere.

Every call and every relayed API request goes through these, and building ORM queries was most of what they
cost in CPU (docs/benchmarks.md). On PostgreSQL each trip is one statement bound on the server, so that it is
planned once per pooled connection (with DATABASE_PREPARED_STATEMENTS, the default; psycopg keeps the last
100 per connection, and an id past 32,767 or 2^31 is another parameter type, so another plan). SQLite
(`make run`) takes the same steps through the ORM, and the test suite runs on both.

- `worker`: the worker's claim before the provider call and its record after;
- `api`: the API's reads (the token, what the request names, the outcome);
- `queueing`: a queued call's rows (with a chat request's new conversation), then the workers rung;
- `preclaimed`: an API request's call inserted already claimed, rung with what its worker's claim would read;
- `sql`: what they share (running a statement, rows into model instances, column lists from `_meta`).
"""

from . import preclaimed
from .api import (
    connection_named,
    contact_lock,
    conversation_latest,
    integration_by_token,
    latest_attempt,
    template_allowed,
)
from .queueing import ONE_STATEMENT_MESSAGES, call_accept, chat_accept, durable
from .sql import fetch_one, instance
from .worker import Claimed, Prompt, call_claim, call_due_in, call_record

__all__ = [
    "preclaimed",
    "ONE_STATEMENT_MESSAGES",
    "Claimed",
    "Prompt",
    "call_accept",
    "call_claim",
    "call_due_in",
    "call_record",
    "chat_accept",
    "durable",
    "connection_named",
    "contact_lock",
    "conversation_latest",
    "fetch_one",
    "instance",
    "integration_by_token",
    "latest_attempt",
    "template_allowed",
]
