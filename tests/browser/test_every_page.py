"""Every dashboard page, on a laptop and on a phone: no console error, no failed request, no sideways scrolling
of the page, and no serious or critical accessibility violation (axe-core, vendored in tests/browser/vendor)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.pages import CANARIES, dashboard_pages

pytestmark = pytest.mark.django_db(transaction=True)
AXE = (Path(__file__).parent / "vendor" / "axe-4.14.1.min.js").read_text()
WIDTHS = {"laptop": (1280, 800), "phone": (390, 844)}
# Downloads, JSON and the fragments htmx swaps into pages are not pages of their own.
NOT_PAGES = {"export.csv", "export.jsonl", "/api/schema/", "/send/fields/", "/status/", "/simulator/messages/",
             "/inbox/count/"}  # fmt: skip


def log_in_as(page, live_server, user, password):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def accessibility_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it is now."""
    page.evaluate(AXE)  # evaluated by the browser's own debugger: the page's CSP does not apply to it
    violations = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
             .filter(v => v.impact === "serious" || v.impact === "critical")
             .map(v => ({id: v.id, impact: v.impact, help: v.help, targets: v.nodes.slice(0, 3).map(n => n.target)}))"""
    )
    return violations


@pytest.mark.parametrize("width", list(WIDTHS))
def test_every_page_works_on_a_laptop_and_a_phone(page, live_server, world, width):
    problems: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(f"console: {message.text}"))
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    # A request cut off because the test moved on to the next page (ERR_ABORTED) is not a failure of the page.
    page.on(
        "requestfailed",
        lambda request: (
            "ERR_ABORTED" not in (request.failure or "")
            and problems.append(f"request failed: {request.url} ({request.failure})")
        ),
    )
    page.on(
        "response",
        lambda response: (
            response.status >= 400
            and response.url.startswith(live_server.url)
            and problems.append(f"HTTP {response.status}: {response.url}")
        ),
    )
    page.set_viewport_size(dict(zip(("width", "height"), WIDTHS[width], strict=True)))
    log_in_as(page, live_server, world["admin"], CANARIES["password"])

    for path in dashboard_pages(world):
        if any(part in path for part in NOT_PAGES):
            continue
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        if overflow > 1:
            problems.append(f"{path}: the page scrolls sideways by {overflow} px")
        for violation in accessibility_violations(page):
            problems.append(
                f"{path}: {violation['impact']} {violation['id']} ({violation['help']}) at {violation['targets']}"
            )

    assert problems == [], "\n".join(problems)


def test_on_a_phone_the_navigation_is_one_line_until_opened(page, live_server, world):
    page.set_viewport_size({"width": 390, "height": 844})
    log_in_as(page, live_server, world["admin"], CANARIES["password"])
    page.goto(f"{live_server.url}{reverse('conversations:calls')}")

    bar = page.locator("#topbar")
    assert bar.bounding_box()["height"] < 60
    expect(page.locator("#topbar-nav")).to_be_hidden()
    page.get_by_role("button", name="Menu").click()
    expect(page.get_by_role("link", name="Conversations")).to_be_visible()
    expect(page.locator("#topbar-nav a[aria-current=page]")).to_have_text("Calls")


def test_on_a_phone_the_filters_are_folded_and_the_log_is_cards(page, live_server, world):
    page.set_viewport_size({"width": 390, "height": 844})
    log_in_as(page, live_server, world["admin"], CANARIES["password"])
    page.goto(f"{live_server.url}{reverse('conversations:calls')}")

    expect(page.locator("form.filters")).to_be_hidden()
    row = page.locator("table.log tbody tr").first
    named = page.evaluate("getComputedStyle(document.querySelector('td[data-label=Status]'), '::before').content")
    assert named == '"Status"'  # each cell named by its column, read top to bottom
    assert row.bounding_box()["width"] <= 390
    page.get_by_text("Filters").click()
    expect(page.locator("form.filters")).to_be_visible()


def test_the_console_can_be_used_with_the_keyboard_alone(page, live_server, world):
    log_in_as(page, live_server, world["admin"], CANARIES["password"])
    page.goto(f"{live_server.url}/")
    page.locator("#id_connection").focus()

    names = []
    for _ in range(12):
        page.keyboard.press("Tab")
        names.append(page.evaluate("document.activeElement.name || document.activeElement.textContent.trim()"))
    assert {"template", "var_business_name", "customer_message"} <= set(names)
    page.locator("#id_var_business_name").focus()
    page.keyboard.type("Acme")
    page.keyboard.press("Tab")
    page.keyboard.type("Sent with the keyboard")
    page.keyboard.press("Tab")
    while page.evaluate("document.activeElement.textContent.trim()") != "Send":
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url("**/?call=*")
    expect(page.locator("#result")).to_contain_text("Call")
