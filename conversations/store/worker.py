"""The worker's two trips to the database per call: claim-and-load before the provider call, record after.

`delivery` decides what happens to a call; this module only reads and writes its rows. It runs for every
call, and the ORM's query building was most of the pipeline's own cost (docs/benchmarks.md), so on
PostgreSQL each trip is one hand-written statement:

- claim: an UPDATE … RETURNING that takes the queued row, joined in the same statement with the
  conversation, the connection and the conversation's recent messages (three ORM queries otherwise);
- record: lock the row we still hold, insert the reply message, write the outcome and touch the
  conversation (a transaction of four ORM statements otherwise).

A relayed API request's call skips the claim: the web inserts it claimed and rings it with what the claim
would read (`preclaimed`). Column lists come from the models' `_meta`, so a new field needs no change here.
Other databases (SQLite for `make run`) take the same steps through the ORM; the test suite runs on both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.conf import settings
from django.db import transaction
from django.db.models import Value
from django.db.models.functions import Greatest

from connectors.models import ProviderConnection

from ..models import Call, Conversation, Integration, Message, PromptTemplate, TemplateVersion
from ..rendering import PromptText
from .sql import all_fields, columns, fetch_one, instance, postgresql, quote, turns


@dataclass
class Claimed:
    call: Call  # with .conversation and .connection loaded
    history: list[tuple[str, str]]  # (role, content) up to the call's message, newest first
    has_callback: bool = False  # the conversation's integration has a callback URL (its outcome is posted)
    # The template text the call renders, read with the claim (no query of its own while the call runs): the
    # version the conversation pinned, else the template's published text; None without a template.
    prompt: Prompt | None = None


@dataclass
class Prompt(PromptText):
    name: str
    system_prompt: str
    user_message: str
    version_id: int | None

    @property
    def prompt_name(self) -> str:
        return self.name


def call_claim(*, call_id: int, worker: str, token: datetime) -> Claimed | None:
    """Take a queued call that is due (run_after has come) for this worker (`token`, the worker's clock,
    becomes its started_at), or None if it is not queued or not due yet."""
    limit = settings.CONVERSATION_HISTORY_MESSAGES
    db = postgresql()
    if db is None:
        return _claim_orm(call_id, worker, token, limit)
    params = {
        "id": call_id,
        "queued": Call.Status.QUEUED,
        "running": Call.Status.RUNNING,
        "token": token,
        "worker": worker,
        "limit": limit,
    }
    # In autocommit (a worker) the claim is a transaction of its own and need not wait for the disk; inside
    # a caller's transaction, it must not make that transaction's commit skip the wait.
    row = fetch_one(db, _claim_sql(no_wait=db.get_autocommit()), params)
    if row is None:
        return None
    values = iter(row)
    call = instance(db, Call, all_fields(Call), values)
    call.conversation = instance(db, Conversation, all_fields(Conversation), values)
    call.connection = instance(db, ProviderConnection, all_fields(ProviderConnection), values)
    history = turns(next(values))
    has_callback = bool(next(values))
    name, system, user, published_id, pinned_system, pinned_user = (next(values) for _ in range(6))
    prompt = None
    if call.conversation.template_id is not None:
        pinned = call.conversation.template_version_id
        prompt = Prompt(
            name,
            pinned_system if pinned else system,
            pinned_user if pinned else user,
            pinned or published_id,
        )
    return Claimed(call, history, has_callback, prompt)


def call_due_in(*, call_id: int, now: datetime) -> float | None:
    """Seconds until a queued call is due, when its broker message came early (a burst's window grew since
    it was sent, or a retry's message arrived before its backoff ended); None otherwise."""
    run_after = (
        Call.objects.filter(pk=call_id, status=Call.Status.QUEUED, run_after__gt=now)
        .values_list("run_after", flat=True)
        .first()
    )
    return (run_after - now).total_seconds() if run_after else None


def call_record(*, call: Call, fields: list[str], reply_text: str | None) -> bool:
    """Write the outcome `fields` of a call this worker still holds (status running, our started_at).

    With `reply_text`, the assistant's message is created (at `call.finished_at`, the worker's clock) and
    linked as the call's reply; the `reply` field itself is that link. On PostgreSQL the call's
    `finished_at` is then the database's clock as the outcome went on record (the benchmarks read it).
    Returns False, writing nothing, when the sweeper has handed the call to another worker meanwhile.
    """
    db = postgresql()
    if db is None:
        return _record_orm(call, fields, reply_text)
    reply = None
    if reply_text is not None:
        reply = Message(
            conversation_id=call.conversation_id,
            role=Message.Role.ASSISTANT,
            content=reply_text,
            created_at=call.finished_at,
        )
    params = {
        "id": call.pk,
        "running": Call.Status.RUNNING,
        "token": call.started_at,
        "has_reply": reply is not None,
        "touched_at": call.finished_at,  # the conversation's latest activity, never moved back
    }
    for field in _reply_fields():
        value = getattr(reply, field.attname) if reply else field.get_default()
        params[f"m_{field.attname}"] = field.get_db_prep_save(value, db)
    for field in _outcome_fields(tuple(fields)):
        params[f"f_{field.name}"] = field.get_db_prep_save(getattr(call, field.attname), db)
    finished_at, reply_id = fetch_one(db, _record_sql(tuple(fields)), params)
    if finished_at is None:
        return False
    call.finished_at = finished_at
    if reply is not None:
        reply.id = reply_id
        reply._state.adding, reply._state.db = False, db.alias  # as if loaded: it is in the database now
        call.reply = reply
    return True


# --- PostgreSQL ------------------------------------------------------------------------------------


@cache
def _claim_sql(*, no_wait: bool) -> str:
    q = quote
    # Named columns, never *: a column added by a later migration must not change what a prepared
    # statement returns.
    selected = f"{columns('claimed', Call)}, {columns('cv', Conversation)}, {columns('cn', ProviderConnection)}"
    returning = ", ".join(q(f.column) for f in all_fields(Call))
    message = q(Message._meta.db_table)
    # The conversation's newest messages up to the one this call answers; the worker trims them to the
    # token budget. json_agg keeps them in one column of the one row.
    # With no_wait, the claim's commit does not wait for its WAL flush (synchronous_commit off for this
    # transaction only; the outcome's commit still waits, and flushes the claim with it). A claim lost with a crash
    # of the database costs nothing but time: the call is queued again, the sweeper sends it again, and
    # this worker's outcome finds its token gone and records nothing. The flush was 0.3-0.6 ms of the
    # time before every provider request on the 2-core benchmark machine.
    return f"""
        WITH claimed AS (
            UPDATE {q(Call._meta.db_table)}
            SET status = %(running)s, started_at = %(token)s, worker = %(worker)s
            WHERE id = %(id)s AND status = %(queued)s AND run_after <= %(token)s
            RETURNING {returning}
        )
        SELECT {selected}, (
            SELECT json_agg(
                json_build_array(recent.role, recent.content) ORDER BY recent.created_at DESC, recent.id DESC
            )
            FROM (
                SELECT m.role, m.content, m.created_at, m.id FROM {message} m
                WHERE m.conversation_id = claimed.conversation_id AND m.id <= claimed.message_id
                ORDER BY m.created_at DESC, m.id DESC
                LIMIT %(limit)s
            ) recent
        )
        , COALESCE(ig.{q("callback_url")} <> '', false)
        , pt.{q("name")}, pt.{q("system_prompt")}, pt.{q("user_message")}, pt.{q("published_id")}
        , tv.{q("system_prompt")}, tv.{q("user_message")}
        FROM claimed
        JOIN {q(Conversation._meta.db_table)} cv ON cv.id = claimed.conversation_id
        JOIN {q(ProviderConnection._meta.db_table)} cn ON cn.id = claimed.connection_id
        LEFT JOIN {q(Integration._meta.db_table)} ig ON ig.id = cv.integration_id
        LEFT JOIN {q(PromptTemplate._meta.db_table)} pt ON pt.id = cv.template_id
        LEFT JOIN {q(TemplateVersion._meta.db_table)} tv ON tv.id = cv.template_version_id
        {"CROSS JOIN (SELECT set_config('synchronous_commit', 'off', true)) AS no_wait" if no_wait else ""}
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


# Call fields the record statement sets itself: the reply link and the time it went on record.
_SET_BY_STATEMENT = ("reply", "finished_at")


@cache
def _outcome_fields(names: tuple[str, ...]):
    """The call fields among `names` that the record statement takes as parameters."""
    return [Call._meta.get_field(name) for name in names if name not in _SET_BY_STATEMENT]


@cache
def _reply_fields():
    """Every column of a reply message but its id, from the model: a new field needs no change here."""
    return [f for f in Message._meta.concrete_fields if not f.primary_key]


@cache
def _record_sql(fields: tuple[str, ...]) -> str:
    q = quote
    call_table, conversation_table = q(Call._meta.db_table), q(Conversation._meta.db_table)
    assignments = ", ".join(f"{q(f.column)} = %(f_{f.name})s" for f in _outcome_fields(fields))
    reply_columns = ", ".join(q(f.column) for f in _reply_fields())
    reply_values = ", ".join(f"%(m_{f.attname})s" for f in _reply_fields())
    # FOR UPDATE re-checks status and started_at against the newest row version, so a call the sweeper
    # gave to another worker meanwhile matches nothing, and nothing below happens. Data-modifying CTEs
    # all run, once, whether or not the final SELECT reads them. The call's finished_at is the
    # database's clock as it writes the row, just before the commit.
    return f"""
        WITH held AS (
            SELECT id, conversation_id, clock_timestamp() AS recorded_at FROM {call_table}
            WHERE id = %(id)s AND status = %(running)s AND started_at = %(token)s
            FOR UPDATE
        ), reply AS (
            INSERT INTO {q(Message._meta.db_table)} ({reply_columns})
            SELECT {reply_values} FROM held
            WHERE %(has_reply)s
            RETURNING id
        ), recorded AS (
            UPDATE {call_table}
            SET {assignments}, finished_at = held.recorded_at, reply_id = (SELECT id FROM reply)
            FROM held WHERE {call_table}.id = held.id
            RETURNING finished_at
        ), touched AS (
            UPDATE {conversation_table}
            SET updated_at = GREATEST({conversation_table}.updated_at, %(touched_at)s)
            FROM held WHERE {conversation_table}.id = held.conversation_id
        )
        SELECT (SELECT finished_at FROM recorded), (SELECT id FROM reply)
    """  # noqa: S608 - the only interpolations are quoted names from the models' _meta


# --- Other databases: the same steps through the ORM ----------------------------------------------


def _claim_orm(call_id: int, worker: str, token: datetime, limit: int) -> Claimed | None:
    if not Call.objects.filter(pk=call_id, status=Call.Status.QUEUED, run_after__lte=token).update(
        status=Call.Status.RUNNING, started_at=token, worker=worker
    ):
        return None
    call = Call.objects.select_related(
        "connection", "conversation__integration", "conversation__template", "conversation__template_version"
    ).get(pk=call_id)
    history = (
        Message.objects.filter(conversation_id=call.conversation_id, id__lte=call.message_id)
        .order_by("-created_at", "-id")
        .values_list("role", "content")[:limit]
    )
    integration = call.conversation.integration
    return Claimed(call, list(history), bool(integration and integration.callback_url), _prompt_orm(call.conversation))


def _prompt_orm(conversation: Conversation) -> Prompt | None:
    if conversation.template_id is None:
        return None
    template, pinned = conversation.template, conversation.template_version
    text = pinned or template
    return Prompt(template.name, text.system_prompt, text.user_message, pinned.pk if pinned else template.published_id)


def _record_orm(call: Call, fields: list[str], reply_text: str | None) -> bool:
    with transaction.atomic():
        if reply_text is not None:
            call.reply = Message.objects.create(
                conversation_id=call.conversation_id, role=Message.Role.ASSISTANT, content=reply_text
            )
        held = Call.objects.filter(pk=call.pk, status=Call.Status.RUNNING, started_at=call.started_at).update(
            **{name: getattr(call, name) for name in fields}
        )
        if not held:
            transaction.set_rollback(True)  # and the reply message above with it
            return False
        Conversation.objects.filter(pk=call.conversation_id).update(
            updated_at=Greatest("updated_at", Value(call.finished_at))
        )
    return True
