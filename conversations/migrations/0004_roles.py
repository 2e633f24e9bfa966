"""The two roles: "Support staff" test-send and read the logs; "Admins" may do everything."""

from django.db import migrations

from conversations.roles import ADMINS, SUPPORT_STAFF, ensure_roles


def create_roles(apps, schema_editor):
    ensure_roles(apps)


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=[SUPPORT_STAFF, ADMINS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0003_dashboard"),
        ("connectors", "0004_seed_model_prices"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]
    operations = [migrations.RunPython(create_roles, remove_roles)]
