"""The two roles, as groups: "Support staff" test-send and read the logs; "Admins" may do everything.

Every `migrate` ends with `roles_after_migrate` (a post_migrate handler), which creates the groups if need
be and gives them every permission they should have, including those of models added since: permissions
granted inside a migration only cover the models that existed at that step. Permissions are only added,
never taken away, so an operator's additions to a group survive an upgrade.
"""

from __future__ import annotations

from django.contrib.auth.management import create_permissions
from django.db.models import Q

SUPPORT_STAFF = "Support staff"
ADMINS = "Admins"
SUPPORT_STAFF_PERMISSIONS = [
    ("conversations", "send_test"),
    ("conversations", "view_conversation"),
    ("conversations", "handle_conversation"),
    ("conversations", "view_conversationevent"),
    ("conversations", "view_feedback"),
    ("conversations", "view_call"),
    ("conversations", "view_message"),
    ("conversations", "view_prompttemplate"),
    ("conversations", "view_testset"),
    ("conversations", "add_testcase"),
    ("conversations", "add_testrun"),
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
    # Those whose models exist yet (a migration runs this with the models of its time; post_migrate, with all).
    wanted = Q()
    for app, code in SUPPORT_STAFF_PERMISSIONS:
        wanted |= Q(content_type__app_label=app, codename=code)
    staff.permissions.add(*Permission.objects.filter(wanted))
    admins, _ = Group.objects.get_or_create(name=ADMINS)
    admins.permissions.add(*Permission.objects.filter(content_type__app_label__in=ADMIN_APPS))


def roles_after_migrate(sender, apps=None, using="default", **kwargs) -> None:
    """post_migrate: bring both roles up to date with every model the migrations created."""
    from django.apps import apps as global_apps

    if not global_apps.is_installed("django.contrib.auth"):
        return
    ensure_roles(apps or global_apps)
