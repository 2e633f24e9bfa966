"""The API relay path (issue 16): both ways in, the drop-in `/api/v1/chat/completions` and `/api/v1/messages`
with `wait`, against the same upstream called directly, at 1 and 8 clients, with the CPU each process spent
per relayed request.

Every relayed request still leaves its conversation, message and call rows, and the worker makes the provider
call. Ratios compare the relay with the direct loop measured in the same run, on the same upstream.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

import psutil
import requests

from . import data, harness
from .suite import row

BODY = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Where is my parcel?"}]}
CONTACTS_PER_CLIENT = 50  # /api/v1/messages: each client speaks for this many customers, each continuing a conversation


def chat_body(client: int, n: int) -> dict:
    return BODY


def message_body(client: int, n: int) -> dict:
    contact = f"+3361{client:02d}{n % CONTACTS_PER_CLIENT:05d}"
    return {"template": "Bench", "contact": contact,
            "message": "Where is my parcel?", "wait": 30}  # fmt: skip


def _load(
    url: str, headers: dict, count: int, clients: int, body: Callable[[int, int], dict] = chat_body
) -> tuple[float, list[float], list[int]]:
    """`count` POSTs from `clients` threads, each with its own session: (seconds, latencies in ms, statuses)."""
    latencies, statuses, lock = [], [], threading.Lock()

    def client(k: int, n: int) -> None:
        session = requests.Session()
        for i in range(n):
            started = time.monotonic()
            response = session.post(url, json=body(k, i), headers=headers, timeout=60)
            with lock:
                latencies.append((time.monotonic() - started) * 1000)
                statuses.append(response.status_code)

    threads = [threading.Thread(target=client, args=(k, count // clients)) for k in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - began, latencies, statuses


def _cpu_seconds(processes: list[psutil.Process]) -> dict[int, float]:
    """CPU seconds (user + system) by process id; processes gone meanwhile are left out."""
    spent = {}
    for process in processes:
        try:
            times = process.cpu_times()
            spent[process.pid] = times.user + times.system
        except psutil.Error:
            pass
    return spent


def _delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two samples by the processes alive at both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _named(*names: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["name"]) if any(n in (p.info["name"] or "") for n in names)]


def relay(env, quick: bool) -> list[dict]:
    from conversations.api.tokens import integration_create
    from conversations.models import Integration

    counts = {1: 100, 8: 200} if quick else {1: 600, 8: 1600}
    port = harness.free_port()
    rows = []
    with harness.sandbox(env) as base_url, ExitStack() as stack:
        connection = data.connection_for(base_url)
        Integration.objects.filter(name="Relay").delete()
        _, token = integration_create(name="Relay", templates=[data.template()], connections=[connection])
        worker = stack.enter_context(harness.worker(env, "relay", pool="threads", concurrency=16))
        web = stack.enter_context(_gunicorn(env, port, "gunicorn-relay"))
        polling_port = harness.free_port()  # the same web server polling the database, for the wake-up's ratio
        stack.enter_context(_gunicorn({**env, "API_WAIT_WAKEUP": "false"}, polling_port, "gunicorn-polling"))
        relay_url = f"http://127.0.0.1:{port}/api/v1/chat/completions"
        polling_url = f"http://127.0.0.1:{polling_port}/api/v1/chat/completions"
        harness.wait_until(lambda: _answers(relay_url, token), 30, "gunicorn to answer")
        harness.wait_until(lambda: _answers(polling_url, token), 30, "gunicorn (polling) to answer")
        direct_url, direct_headers = f"{base_url}/chat/completions", {"Authorization": "Bearer sandbox-bench-key"}
        relay_headers = {"Authorization": f"Bearer {token}"}
        _load(relay_url, relay_headers, 20, 1)  # warm: imports, connections, prepared statements
        _load(direct_url, direct_headers, 20, 1)
        groups = {
            "web": _tree(web.pid),
            "worker": _tree(worker.pid),
            "postgresql": _named("postgres"),
            "redis": _named("redis-server", "redis"),
        }
        _load(polling_url, relay_headers, 20, 1)
        polled_s, polled_ms, _ = _load(polling_url, relay_headers, counts[1], 1)
        woken_s, woken_ms, _ = _load(relay_url, relay_headers, counts[1], 1)
        polled_p50, woken_p50 = harness.percentile(polled_ms, 50), harness.percentile(woken_ms, 50)
        rows.append(
            row("relay_wakeup_p50", woken_p50, "ms", "below polling", woken_p50 < polled_p50,
                baseline=polled_p50, ratio=woken_p50 / polled_p50)
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}/api/v1"
        ways = {"chat": (f"{base}/chat/completions", chat_body), "messages": (f"{base}/messages", message_body)}
        for way, (url, body) in ways.items():
            _load(url, relay_headers, 20, 1, body)  # warm this way in, and its conversations
            for clients, count in counts.items():
                rows += _measure(way, url, body, relay_headers, (direct_url, direct_headers), groups, count, clients)
    return rows


def _measure(way, url, body, headers, direct, groups, count: int, clients: int) -> list[dict]:
    """One way in at one number of clients: the direct loop, then the relay, with CPU by process."""
    harness.wait_quiet()
    direct_s, direct_ms, _ = _load(*direct, count, clients)
    before = {name: _cpu_seconds(procs) for name, procs in groups.items()}
    relay_s, relay_ms, statuses = _load(url, headers, count, clients, body)
    spent = {name: _delta(before[name], _cpu_seconds(procs)) * 1000 / count for name, procs in groups.items()}
    direct_rps, relay_rps = count / direct_s, count / relay_s
    direct_p50, relay_p50 = harness.percentile(direct_ms, 50), harness.percentile(relay_ms, 50)
    added = relay_p50 - direct_p50
    cpu = sum(spent.values())
    name = f"relay_{way}_{clients}_client"
    return [
        row(f"{name}_requests_per_second", relay_rps, "requests/s", "reported", None,
            baseline=direct_rps, ratio=relay_rps / direct_rps, answered=statuses.count(200), requests=count),
        row(f"{name}_added_latency_p50", added, "ms", "≤ 5 ms" if clients == 1 else "reported",
            added <= 5 if clients == 1 else None, baseline=direct_p50, p50=relay_p50,
            p99=harness.percentile(relay_ms, 99)),
        row(f"{name}_cpu_per_request", cpu, "ms", "≤ 10 ms", cpu <= 10,
            **{f"{group}_ms": round(value, 2) for group, value in spent.items()}),
    ]  # fmt: skip


def _gunicorn(env, port: int, name: str):
    argv = [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2",
            "--threads", "16", "--log-level", "warning"]  # fmt: skip
    return harness.process(argv, env, name, ready=lambda text: True)


def _answers(url: str, token: str) -> bool:
    try:
        return requests.post(url, json=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=5).ok
    except requests.RequestException:
        return False
