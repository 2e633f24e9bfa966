"""The benchmarks of the support workflow: the inbox at scale, and what a burst window adds to a reply."""

from __future__ import annotations

import json
import time

from . import data, harness
from .suite import row


def inbox_at_scale(env, quick: bool) -> list[dict]:
    """p95 of the inbox's pages and of the navigation's count with 1,000,000 conversations in the database
    (0.2% of them waiting for a person, as seed_logs makes them), through Django's test client."""
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from conversations.models import Conversation

    conversations = 50_000 if quick else 1_000_000
    data.connection_for("https://api.mistral.ai/v1", name="Seeded")
    data.template()
    started = time.monotonic()
    call_command(
        "seed_logs",
        calls=conversations,
        calls_per_conversation=1,
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )
    seeding = time.monotonic() - started
    waiting = Conversation.objects.filter(state=Conversation.State.WAITING).count()
    user = get_user_model().objects.filter(username="bench").first() or get_user_model().objects.create_superuser(
        "bench", "bench@example.com", "bench-password-1"
    )
    client = Client()
    client.force_login(user)
    pages = {
        "inbox_waiting": ("/inbox/", {}),
        "inbox_live_refresh": ("/inbox/", {"tab": "waiting", "_htmx": "1"}),
        "inbox_held": ("/inbox/", {"tab": "held"}),
        "nav_count": ("/inbox/count/", {}),
    }
    results = [
        row("inbox_seeded", conversations, "conversations", "reported", None, seconds=round(seeding, 1)),
        row("inbox_waiting_rows", waiting, "conversations", "reported", None),
    ]
    for name, (url, params) in pages.items():
        headers = {"HTTP_HX_REQUEST": "true"} if params.pop("_htmx", None) else {}
        times = []
        for _ in range(30):
            t = time.monotonic()
            response = client.get(url, params, **headers)
            times.append((time.monotonic() - t) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        p95 = harness.percentile(times, 95)
        results.append(row(f"page_p95_{name}", p95, "ms", "<= 300 ms", p95 <= 300, conversations=conversations))
    return results


def burst_window(env, quick: bool) -> list[dict]:
    """Time from a customer's WhatsApp message to its reply sent, through the webhook path, a real worker,
    the sandbox and its Graph stand-in: with no burst window (the baseline) and with a 1 s window. The
    window may add at most itself: the answer goes out when the window closes, not a poll later."""
    from django.core.management import call_command

    from conversations import whatsapp
    from conversations.models import Outbound, WhatsAppChannel
    from conversations.whatsapp.views import simulated_payload

    window, customers = 1.0, 10 if quick else 30
    medians = {}
    with harness.sandbox(env) as base_url:
        data.connection_for(base_url, name="Burst")
        data.template()
        with harness.worker(env, "burst", pool="threads", concurrency=8):
            for seconds in (0.0, window):
                WhatsAppChannel.objects.filter(name="Bench shop").delete()
                call_command(
                    "add_whatsapp_channel", "Bench shop", phone_number_id="106540352242922", app_secret="s",
                    access_token="t", template="Bench", connection="Burst", burst_seconds=seconds,
                    graph_base_url=base_url.removesuffix("/v1"), stdout=open("/dev/null", "w"),  # noqa: SIM115
                )  # fmt: skip
                channel = WhatsAppChannel.objects.get(name="Bench shop")
                latencies = []
                for n in range(customers):  # one at a time: the figure is the wait, not a queue
                    payload = simulated_payload(channel, f"1555020{n:04d}", "Where is my order?")
                    payload["entry"][0]["changes"][0]["value"]["messages"][0]["id"] = f"wamid.BENCH{seconds}-{n}"
                    body = json.dumps(payload).encode()
                    whatsapp.webhook_accept(channel=channel, raw_body=body, signature=whatsapp.sign(channel, body))
                    sent = Outbound.objects.filter(
                        kind=Outbound.Kind.WHATSAPP, status=Outbound.Status.SENT, conversation__channel=channel
                    )
                    harness.wait_until(lambda n=n, sent=sent: sent.count() > n, 30, "the reply", 0.01)
                    reply = sent.select_related("call__message").order_by("-id").first()
                    latencies.append((reply.finished_at - reply.call.message.created_at).total_seconds() * 1000)
                medians[seconds] = harness.median(latencies)
    added = medians[window] - medians[0.0]
    return [
        row("reply_ms_no_window", medians[0.0], "ms", "reported", None, customers=customers),
        row(
            "burst_window_added_ms",
            added,
            "ms",
            f"<= {window * 1000:.0f} ms (the window)",
            added <= window * 1000,
            baseline=medians[0.0],
            ratio=medians[window] / medians[0.0],
            window_ms=window * 1000,
        ),
    ]
