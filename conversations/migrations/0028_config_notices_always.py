"""The configuration triggers (0027) fire in every session, replication-role `replica` included.

A session with `session_replication_role = replica` (logical replication's apply, some bulk-loading tools)
skips ordinary triggers: a change made there was never announced, and web processes kept the old row until
some other change emptied their memory (an outside test: an integration disabled that way still answered
for a minute). ENABLE ALWAYS makes the trigger fire there too. (`ALTER TABLE … ENABLE TRIGGER ALL`, which
pg_restore --disable-triggers issues after its data, sets it back to ordinary; the memory's age limit,
conversations/store/remembered.py, bounds what that leaves.)"""

import importlib

from django.db import migrations

notices = importlib.import_module("conversations.migrations.0027_config_notices")


def always(apps, schema_editor):
    _enable(apps, schema_editor, "ENABLE ALWAYS")


def ordinary(apps, schema_editor):
    _enable(apps, schema_editor, "ENABLE")


def _enable(apps, schema_editor, clause: str) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in notices._tables(apps):
        schema_editor.execute(f"ALTER TABLE {schema_editor.quote_name(table)} {clause} TRIGGER {notices.FUNCTION}")


class Migration(migrations.Migration):
    dependencies = [("conversations", "0027_config_notices")]

    operations = [migrations.RunPython(always, ordinary)]
