"""On PostgreSQL, an index that serves "contact starts with" (LIKE 'x%') whatever the database collation."""

from django.db import migrations

CREATE = (
    "CREATE INDEX IF NOT EXISTS conversation_contact_prefix_idx "
    "ON conversations_conversation (contact varchar_pattern_ops)"
)
DROP = "DROP INDEX IF EXISTS conversation_contact_prefix_idx"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0005_log_indexes")]
    operations = [migrations.RunPython(create, drop)]
