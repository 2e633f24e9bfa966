"""Browser tests: Playwright driving Debian's Chromium (headless) against pytest-django's live server.

Playwright's own browser download cannot work on our offline machines, so the system Chromium is used.
Without it the tests are skipped with a notice; `.ci/run` installs it, so CI always runs them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# The live server runs in a thread beside Playwright's sync API, which owns an event loop.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_collection_modifyitems(config, items):
    if Path(CHROMIUM).exists():
        return
    skip = pytest.mark.skip(reason="Chromium is not installed (apt-get install chromium): browser tests skipped")
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


def log_in(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", f"{user.username}-password-1")
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


@pytest.fixture
def logged_in_page(page, live_server, support_user):
    """A browser logged in as support staff."""
    log_in(page, live_server, support_user)
    return page


def screenshot(page, name: str) -> None:
    """Keep a picture of the page at desktop and phone widths for the README (`make screenshots`).

    Only when UPDATE_SCREENSHOTS is set, so an ordinary test run leaves the working tree as it was.
    """
    if not os.environ.get("UPDATE_SCREENSHOTS"):
        return
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # Pages fold their filters for the screen they are opened on: such a page is opened again at each width.
    folds = page.evaluate("document.querySelector('details.filters-fold') !== null")
    for width, height, label in ((1280, 800, "desktop"), (390, 844, "phone"), (1280, 800, None)):
        page.set_viewport_size({"width": width, "height": height})
        if folds and label != "desktop":
            page.reload()
            page.wait_for_load_state("networkidle")
        if label:
            page.screenshot(path=SCREENSHOTS / f"{name}-{label}.png", full_page=True)
