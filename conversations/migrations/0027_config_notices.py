"""Triggers that announce a change to what the API remembers (conversations/store/remembered.py): any statement
on these tables NOTIFYs `switchboard_config`, which PostgreSQL delivers when the transaction commits. A
statement trigger, so a statement that changes many rows (or none) sends one notice; TRUNCATE included.
PostgreSQL only: on other databases nothing is remembered, so nothing needs announcing."""

from django.db import migrations

CHANNEL = "switchboard_config"
FUNCTION = "switchboard_config_changed"


def _tables(apps) -> list[str]:
    integration = apps.get_model("conversations", "Integration")
    return [
        integration._meta.db_table,
        integration._meta.get_field("connections").m2m_db_table(),
        integration._meta.get_field("templates").m2m_db_table(),
        apps.get_model("conversations", "PromptTemplate")._meta.db_table,
        apps.get_model("connectors", "ProviderConnection")._meta.db_table,
    ]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    quote = schema_editor.quote_name
    schema_editor.execute(
        f"CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
        f"BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$"
    )
    for table in _tables(apps):
        schema_editor.execute(
            f"CREATE TRIGGER {FUNCTION} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {quote(table)} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in _tables(apps):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {FUNCTION} ON {schema_editor.quote_name(table)}")
    schema_editor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0026_whatsapp_names"),
        ("connectors", "0010_wording"),
    ]

    operations = [migrations.RunPython(create, drop)]
