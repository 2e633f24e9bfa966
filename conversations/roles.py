"""The two roles, as groups: "Support staff" test-send and read the logs; "Admins" may do everything.

The roles migration creates them; `ensure_roles` does the same for a database whose tables were emptied
(transactional tests) or for an operator repairing them.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions

SUPPORT_STAFF = "Support staff"
ADMINS = "Admins"
SUPPORT_STAFF_PERMISSIONS = [
    ("conversations", "send_test"),
    ("conversations", "view_conversation"),
    ("conversations", "view_call"),
    ("conversations", "view_message"),
    ("conversations", "view_prompttemplate"),
    ("connectors", "view_providerconnection"),
]
ADMIN_APPS = ["connectors", "conversations"]


def ensure_roles(apps) -> None:
    """Create (or repair) both groups with their permissions; `apps` is a migration's or django.apps.apps."""
    for app_config in apps.get_app_configs():
        had_models = getattr(app_config, "models_module", None)
        app_config.models_module = had_models or True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = had_models
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    staff, _ = Group.objects.get_or_create(name=SUPPORT_STAFF)
    staff.permissions.set(
        [Permission.objects.get(content_type__app_label=app, codename=code) for app, code in SUPPORT_STAFF_PERMISSIONS]
    )
    admins, _ = Group.objects.get_or_create(name=ADMINS)
    admins.permissions.set(Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))
