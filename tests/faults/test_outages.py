"""Redis or PostgreSQL going away under traffic: every message answered once, every callback and WhatsApp
reply delivered once, and the API never answers 500 meanwhile.

`make faults` runs these (they take a minute or two each); `.ci/run` calls it after `make test`.
Each test sends 100 customer messages through the API (with the platform's message_id, retried as a
platform retries a 503 or a broken connection) and 100 through the WhatsApp webhook (retried as Meta
retries anything but a 200), and breaks a backing service in the middle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers import wait_until

pytestmark = pytest.mark.faults
MESSAGES = 100


class Traffic:
    """The platform and Meta, sending while the test breaks things; every answer's status is kept."""

    def __init__(self, stack):
        self.stack = stack
        self.statuses: Counter[str] = Counter()
        self.lock = threading.Lock()

    def _note(self, kind: str, status: int | str) -> None:
        with self.lock:
            self.statuses[f"{kind} {status}"] += 1

    def api_message(self, n: int) -> None:
        body = {
            "template": "Support",
            "contact": f"+1555020{n:04d}",
            "message": f"Question {n}",
            "message_id": f"m-{n}",
        }
        headers = {"Authorization": f"Bearer {self.stack.world['token']}"}
        for _ in range(120):
            try:
                response = requests.post(f"{self.stack.url}/api/v1/messages", json=body, headers=headers, timeout=10)
            except requests.RequestException:
                self._note("api", "no answer")
                time.sleep(0.5)
                continue
            self._note("api", response.status_code)
            if response.status_code < 500:
                assert response.status_code == 202, response.text
                assert response.headers["Content-Type"] == "application/json"
                return
            time.sleep(float(response.headers.get("Retry-After", "1")) / 5)
        raise AssertionError(f"API message {n} never accepted")

    def whatsapp_message(self, n: int) -> None:
        channel = self.stack.world["channel"]
        message = {
            "from": f"1555030{n:04d}",
            "id": f"wamid.FAULT{n:04d}",
            "timestamp": "1",
            "type": "text",
            "text": {"body": f"WhatsApp question {n}"},
        }
        payload = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "0",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {"metadata": {"phone_number_id": "106540352242922"}, "messages": [message]},
                        }
                    ],
                }
            ],
        }
        raw = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(self.stack.world["app_secret"].encode(), raw, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        for _ in range(120):
            try:
                response = requests.post(
                    f"{self.stack.url}/whatsapp/{channel}/webhook/", data=raw, headers=headers, timeout=10
                )
            except requests.RequestException:
                self._note("webhook", "no answer")
                time.sleep(0.5)
                continue
            self._note("webhook", response.status_code)
            if response.status_code == 200:
                return
            time.sleep(0.2)  # Meta delivers again
        raise AssertionError(f"WhatsApp message {n} never acknowledged")

    def logged_in(self) -> requests.Session:
        """A browser session of the stack's superuser, logged in before anything breaks."""
        browser = requests.Session()
        login = browser.get(f"{self.stack.url}/accounts/login/", timeout=10)
        token = login.cookies["csrftoken"]
        browser.post(
            f"{self.stack.url}/accounts/login/",
            data={"username": "ops", "password": "ops-password-1", "csrfmiddlewaretoken": token},
            headers={"Referer": f"{self.stack.url}/"},
            timeout=10,
        )
        assert browser.get(f"{self.stack.url}/calls/", timeout=10, allow_redirects=False).status_code == 200
        return browser

    def watch_the_dashboard(self, browser: requests.Session, stop: threading.Event) -> None:
        """Support staff keep the call log open: every answer is a page, a 503 during an outage at worst."""
        while not stop.is_set():
            try:
                response = browser.get(f"{self.stack.url}/calls/", timeout=10, allow_redirects=False)
            except requests.RequestException:
                self._note("dashboard", "no answer")
            else:
                self._note("dashboard", response.status_code)
                if response.status_code == 503:
                    assert "briefly unavailable" in response.text
            time.sleep(0.1)

    def send_all_while(self, breakage) -> None:
        """Send everything from 16 threads, spread over a few seconds, and break things after the first second."""
        stop = threading.Event()
        with ThreadPoolExecutor(16) as pool, ThreadPoolExecutor(2) as breaker:
            watcher = breaker.submit(self.watch_the_dashboard, self.logged_in(), stop)
            futures = []
            for n in range(MESSAGES):
                futures.append(pool.submit(self.api_message, n))
                futures.append(pool.submit(self.whatsapp_message, n))
                if n == 25:
                    broken = breaker.submit(breakage)
                time.sleep(0.04)
            broken.result()  # the breakage itself must have worked
            for future in futures:
                future.result()
            stop.set()
            watcher.result()


def delivered_exactly_once(stack) -> dict[str, int]:
    """Wait for every reply, callback and WhatsApp send, then count them and their repeats."""
    postgres = stack.postgres

    def done() -> bool:
        answered = postgres.query(
            "SELECT count(DISTINCT message_id) FROM conversations_call WHERE status = 'succeeded'"
        )
        sends = [m for m in stack.sandbox_outbox() if m["to"].startswith("1555030")]
        return answered[0][0] >= 2 * MESSAGES and len(stack.receiver.received) >= MESSAGES and len(sends) >= MESSAGES

    def settled() -> bool:
        """Nothing queued or running: no sweeper can send anything again (it only picks up such rows)."""
        busy = postgres.query(
            "SELECT (SELECT count(*) FROM conversations_call WHERE status IN ('queued', 'running'))"
            " + (SELECT count(*) FROM conversations_outbound WHERE status IN ('queued', 'running'))"
        )
        return busy[0][0] == 0

    try:
        wait_until(done, 120, "every reply, callback and WhatsApp send")
        wait_until(settled, 120, "every call and outbound message to be finished")
    except TimeoutError as timeout:
        raise AssertionError(f"{timeout} {stack.describe()}") from None
    time.sleep(2)  # a send already on the wire when the rows settled would land now
    users = postgres.query("SELECT count(*) FROM conversations_message WHERE role = 'user'")[0][0]
    replies = postgres.query("SELECT count(*) FROM conversations_message WHERE role = 'assistant'")[0][0]
    succeeded = postgres.query(
        "SELECT count(*), count(DISTINCT message_id) FROM conversations_call WHERE status = 'succeeded'"
    )[0]
    callbacks = Counter(call_id for _, call_id, _ in stack.receiver.received)
    sends = Counter(m["context"] for m in stack.sandbox_outbox() if m["to"].startswith("1555030"))
    return {
        "accepted": users,
        "replies": replies,
        "callbacks": len(callbacks),
        "whatsapp_sends": len(sends),
        "duplicates": (succeeded[0] - succeeded[1])
        + (replies - succeeded[1])
        + sum(n - 1 for n in callbacks.values())
        + sum(n - 1 for n in sends.values()),
    }


EXPECTED = {"accepted": 200, "replies": 200, "callbacks": 100, "whatsapp_sends": 100, "duplicates": 0}


def test_a_redis_restart_under_traffic_loses_and_repeats_nothing(stack):
    traffic = Traffic(stack)

    traffic.send_all_while(lambda: stack.restart_redis(down_for=3))

    figures = delivered_exactly_once(stack)
    print(f"figures: {figures}; answers: {dict(traffic.statuses)}")
    assert figures == EXPECTED
    assert not [s for s in traffic.statuses if s[s.index(" ") + 1 :].startswith("5") and not s.endswith(" 503")], (
        traffic.statuses
    )


def test_a_postgresql_crash_under_traffic_loses_and_repeats_nothing(stack):
    traffic = Traffic(stack)

    def crash_and_recover():
        stack.postgres.stop("immediate")  # as a crash: no checkpoint, connections cut
        time.sleep(5)
        stack.postgres.start()

    traffic.send_all_while(crash_and_recover)

    figures = delivered_exactly_once(stack)
    print(f"figures: {figures}; answers: {dict(traffic.statuses)}")
    assert figures == EXPECTED
    assert not [s for s in traffic.statuses if s[s.index(" ") + 1 :].startswith("5") and not s.endswith(" 503")], (
        traffic.statuses
    )
    assert not [s for s in traffic.statuses if s.startswith("dashboard 5") and s != "dashboard 503"], traffic.statuses
    assert traffic.statuses["dashboard 200"] > 0
    assert traffic.statuses["api 503"] + traffic.statuses["webhook 503"] > 0  # the outage was seen, and said so
