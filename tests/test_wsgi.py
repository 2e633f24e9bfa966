"""The web server's entry point, config/wsgi.py."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_web_process_imports_its_views_as_it_starts_not_on_its_first_request():
    # In a process of its own: this one has long imported every view. What a fresh web process holds once
    # the server has loaded the application, before any request: the URLconf and the API's views.
    script = (
        "import sys, config.wsgi\n"
        "print(' '.join(m for m in ('config.urls', 'conversations.api.openai_compat', 'conversations.api.views')"
        " if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["config.urls", "conversations.api.openai_compat", "conversations.api.views"]
