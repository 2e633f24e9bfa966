"""The benchmarks of what staff and integrations see: log pages at scale, and the inbound API under load."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack

import requests

from . import data, harness
from .suite import WORKER_PROCESSES, WORKER_THREADS, row


def logs_at_scale(env, quick: bool) -> list[dict]:
    """p95 time of the log pages with many calls in PostgreSQL, through Django's test client."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from conversations.models import Call, Conversation

    calls = 50_000 if quick else 1_000_000
    connection = data.connection_for("https://api.mistral.ai/v1", name="Seeded")
    data.template()
    started = time.monotonic()
    call_command("seed_logs", calls=calls, stdout=open("/dev/null", "w"))  # noqa: SIM115
    seeding = time.monotonic() - started
    user = get_user_model().objects.filter(username="bench").first() or get_user_model().objects.create_superuser(
        "bench", "bench@example.com", "bench-password-1"
    )
    client = Client()
    client.force_login(user)
    contact = Conversation.objects.order_by("-pk").values_list("contact", flat=True).first()
    conversation = Call.objects.order_by("-pk").values_list("conversation_id", flat=True).first()
    pages = {
        "conversation_list": ("/conversations/", {}),
        "call_list_filtered": ("/calls/", {"status": "failed", "connection": connection.pk}),
        "search_by_contact": ("/conversations/", {"contact": contact[:8]}),
        "conversation_page": (f"/conversations/{conversation}/", {}),
        "overview_24h": ("/overview/", {"period": "24h"}),
    }
    results = [row("logs_seeded", calls, "calls", "reported", None, seconds=round(seeding, 1))]
    for name, (url, params) in pages.items():
        times = []
        for _ in range(20):
            t = time.monotonic()
            response = client.get(url, params)
            times.append((time.monotonic() - t) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        p95 = harness.percentile(times, 95)
        results.append(row(f"page_p95_{name}", p95, "ms", "<= 300 ms", p95 <= 300, calls=calls))
    return results


def inbound_api(env, quick: bool) -> list[dict]:
    """The API behind gunicorn: messages accepted per second, and the time to a reply with `wait`."""
    import sys

    from conversations.api.tokens import integration_create
    from conversations.models import Integration

    accepted_count, replies = (300, 60) if quick else (2000, 300)
    port = harness.free_port()
    with harness.sandbox(env) as base_url, ExitStack() as stack:
        connection = data.connection_for(base_url)
        Integration.objects.filter(name="Bench").delete()
        _, token = integration_create(name="Bench", templates=[data.template()], connections=[connection])
        for n in range(WORKER_PROCESSES):
            stack.enter_context(harness.worker(env, f"api{n}", pool="threads", concurrency=WORKER_THREADS))
        stack.enter_context(
            harness.process(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-c",
                    "config/gunicorn.py",  # as the README runs it
                    "config.wsgi",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--log-level",
                    "warning",
                ],
                env,
                "gunicorn",
                ready=lambda text: True,
            )
        )
        url = f"http://127.0.0.1:{port}/api/v1/messages"
        headers = {"Authorization": f"Bearer {token}"}
        harness.wait_until(lambda: _up(url), 30, "gunicorn to answer")

        def post(n, wait, session):
            body = {"template": "Bench", "contact": f"+44{n:09d}", "message": f"Question {n}", "wait": wait}
            t = time.monotonic()
            response = session.post(url, json=body, headers=headers, timeout=60)
            return response.status_code, (time.monotonic() - t) * 1000

        statuses, timings = [], []
        lock = threading.Lock()

        def client(numbers, wait):
            session = requests.Session()
            for n in numbers:
                result = post(n, wait, session)
                with lock:
                    statuses.append(result[0])
                    timings.append(result[1])

        def run(count, wait, start, clients):
            threads = [
                threading.Thread(target=client, args=(range(start + i, start + count, clients), wait))
                for i in range(clients)
            ]
            began = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return time.monotonic() - began

        elapsed = run(accepted_count, 0, 0, 16)
        accepted = statuses.count(202) / elapsed
        statuses.clear()
        timings.clear()
        run(replies, 10, 10_000_000, 4)
        answered = statuses.count(200)
    p50, p95 = harness.percentile(timings, 50), harness.percentile(timings, 95)
    return [
        row("api_messages_accepted_per_second", accepted, "requests/s", "reported", None, requests=accepted_count),
        row("api_time_to_reply_p50", p50, "ms", "reported", None, answered=answered, requests=replies),
        row("api_time_to_reply_p95", p95, "ms", "reported", None),
    ]


def _up(url: str) -> bool:
    try:
        return requests.get(url.replace("/api/v1/messages", "/api/schema/"), timeout=1).status_code == 200
    except requests.RequestException:
        return False
