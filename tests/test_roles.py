"""The two roles after a plain `migrate`, with no test helper in between: complete for every model."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.processes import ROOT

LIST_ROLES = """
import json
from django.apps import apps
from django.contrib.auth.models import Group, Permission
roles = {g.name: sorted(g.permissions.values_list("codename", flat=True)) for g in Group.objects.all()}
apps_ = [apps.get_app_config(app) for app in ("connectors", "conversations")]
models = sorted(m._meta.model_name for app in apps_ for m in app.get_models())
print(json.dumps({"roles": roles, "models": models}))
"""


def test_a_fresh_migrate_gives_admins_every_model_and_support_staff_their_views(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
    }

    def manage(*args):
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    manage("migrate", "--noinput")
    found = json.loads(manage("shell", "-c", LIST_ROLES).strip().splitlines()[-1])

    admins = set(found["roles"]["Admins"])
    for model in found["models"]:
        for action in ("add", "change", "delete", "view"):
            assert f"{action}_{model}" in admins
    assert {"add_integration", "add_whatsappchannel"} <= admins  # what migration 0004 could not grant
    assert set(found["roles"]["Support staff"]) >= {"send_test", "view_call", "view_conversation"}
    assert "change_providerconnection" not in found["roles"]["Support staff"]


def test_a_refused_page_is_logged_without_a_traceback(staff_client, connection, caplog):
    """A Support staff member opening an Admin's page is not a fault: one INFO line, no traceback."""
    import logging

    from django.urls import reverse

    with caplog.at_level(logging.INFO, logger="django.request"):
        assert staff_client.get(reverse("connectors:edit", args=[connection.pk])).status_code == 403
    (record,) = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelname == "INFO" and record.exc_info is None


@pytest.mark.django_db
def test_no_page_offers_a_password_reset_by_mail_that_cannot_be_sent(client):
    for path in ["/accounts/password_reset/", "/accounts/reset/MQ/set-password/", "/accounts/password_reset/done/"]:
        assert client.get(path).status_code == 404
    assert client.post("/accounts/logout/").status_code == 302  # logging out still works


@pytest.mark.django_db
def test_admin_pages_carry_the_icon_and_say_whatsapp(admin_client):
    """A new user's walk: every admin page asked for /favicon.ico (a 404), and the index read "Whats app channels"."""
    index = admin_client.get("/admin/").content.decode()
    change_list = admin_client.get("/admin/conversations/whatsappchannel/").content.decode()

    assert 'rel="icon"' in index and 'rel="icon"' in change_list
    assert "WhatsApp channels" in index and "Whats app" not in index
