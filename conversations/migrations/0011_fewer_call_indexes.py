"""Fewer indexes on the two busiest tables, changed without locking them.

Every index of conversations_call is written on each status change of each call. The single-column indexes
on message_id and connection_id repeat the leading column of call_one_row_per_attempt and
call_connection_recent_idx, so they go. Message.external_id (set only for WhatsApp messages) becomes unique
where set, one partial index, instead of a unique index and a LIKE index over mostly NULLs.

Django's own operations would drop and re-add both foreign keys (re-checking every row) and build the new
index while blocking writes, all in one transaction: on a log of millions of calls, workers and the
dashboard would wait for minutes. On PostgreSQL this migration builds and drops the indexes CONCURRENTLY
instead, outside a transaction, and leaves the foreign keys alone; the model state changes as usual.
"""

from django.db import migrations, models

FK_INDEXES = {
    "conversations_call_connection_id_8c868795": "connection_id",
    "conversations_call_message_id_aa00c2ef": "message_id",
}
PARTIAL_UNIQUE = (
    'CREATE UNIQUE INDEX {concurrently} IF NOT EXISTS "message_external_id_once" '
    'ON "conversations_message" ("external_id") WHERE "external_id" IS NOT NULL'
)


def forwards(apps, schema_editor):
    run = schema_editor.execute
    if schema_editor.connection.vendor == "postgresql":
        run(PARTIAL_UNIQUE.format(concurrently="CONCURRENTLY"))
        run('ALTER TABLE "conversations_message" DROP CONSTRAINT IF EXISTS "conversations_message_external_id_key"')
        run('DROP INDEX CONCURRENTLY IF EXISTS "conversations_message_external_id_5dd3df57_like"')
        for name in FK_INDEXES:
            run(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
    else:
        # SQLite (development databases): the column keeps its table-level UNIQUE, which means the same.
        run(PARTIAL_UNIQUE.format(concurrently=""))
        for name in FK_INDEXES:
            run(f'DROP INDEX IF EXISTS "{name}"')


def backwards(apps, schema_editor):
    run = schema_editor.execute
    concurrently = "CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for name, column in FK_INDEXES.items():
        run(f'CREATE INDEX {concurrently} IF NOT EXISTS "{name}" ON "conversations_call" ("{column}")')
    if schema_editor.connection.vendor == "postgresql":
        run(
            'ALTER TABLE "conversations_message" ADD CONSTRAINT "conversations_message_external_id_key" '
            'UNIQUE ("external_id")'
        )
        run(
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "conversations_message_external_id_5dd3df57_like" '
            'ON "conversations_message" ("external_id" varchar_pattern_ops)'
        )
    run(f'DROP INDEX {concurrently} IF EXISTS "message_external_id_once"')


class Migration(migrations.Migration):
    atomic = False  # CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("connectors", "0006_rate_limits"),
        ("conversations", "0010_internal_error_kind"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="call",
                    name="connection",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=models.deletion.PROTECT,
                        related_name="calls",
                        to="connectors.providerconnection",
                    ),
                ),
                migrations.AlterField(
                    model_name="call",
                    name="message",
                    field=models.ForeignKey(
                        db_index=False,
                        help_text="The customer message this call answers.",
                        on_delete=models.deletion.CASCADE,
                        related_name="calls",
                        to="conversations.message",
                    ),
                ),
                migrations.AlterField(
                    model_name="message",
                    name="external_id",
                    field=models.CharField(blank=True, max_length=200, null=True),
                ),
                migrations.AddConstraint(
                    model_name="message",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("external_id__isnull", False)),
                        fields=("external_id",),
                        name="message_external_id_once",
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
