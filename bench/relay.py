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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import psutil
import requests

from . import data, harness
from .suite import row

BODY = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Where is my parcel?"}]}
WARM = 200  # requests from 8 clients before measuring, so that no process is measured cold
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


@dataclass
class Relay:
    """Switchboard serving the relay (gunicorn, a threaded worker), the upstream it relays to, and the processes
    whose CPU a relayed request costs."""

    base: str  # http://127.0.0.1:PORT/api/v1
    headers: dict
    upstream: str  # the sandbox's /v1
    direct: tuple[str, dict]  # the upstream's chat completions, and its headers: the direct loop
    groups: dict[str, list[psutil.Process]]
    token: str


@contextmanager
def serving(env):
    """Switchboard relaying to a sandbox upstream, warmed up: imports, connections, prepared statements."""
    from conversations.api.tokens import integration_create
    from conversations.models import Integration

    port = harness.free_port()
    with harness.sandbox(env) as upstream, ExitStack() as stack:
        connection = data.connection_for(upstream)
        Integration.objects.filter(name="Relay").delete()
        _, token = integration_create(name="Relay", templates=[data.template()], connections=[connection])
        worker = stack.enter_context(harness.worker(env, "relay", pool="threads", concurrency=16))
        web = stack.enter_context(_gunicorn(env, port, "gunicorn-relay"))
        base = f"http://127.0.0.1:{port}/api/v1"
        harness.wait_until(lambda: _answers(f"{base}/chat/completions", token), 30, "gunicorn to answer")
        direct = (f"{upstream}/chat/completions", {"Authorization": "Bearer sandbox-bench-key"})
        headers = {"Authorization": f"Bearer {token}"}
        # Warm every web process and worker thread: imports, connections, prepared statements.
        _load(f"{base}/chat/completions", headers, WARM, 8)
        _load(*direct, WARM, 8)
        groups = {
            "web": _tree(web.pid),
            "worker": _tree(worker.pid),
            "postgresql": _named("postgres"),
            "redis": _named("redis-server", "redis"),
        }
        yield Relay(base, headers, upstream, direct, groups, token)


def relay(env, quick: bool) -> list[dict]:
    counts = {1: 100, 8: 200} if quick else {1: 600, 8: 1600}
    rows = []
    with serving(env) as sb:
        polling_port = harness.free_port()  # the same web server polling the database, for the wake-up's ratio
        with _gunicorn({**env, "API_WAIT_WAKEUP": "false"}, polling_port, "gunicorn-polling"):
            polling_url = f"http://127.0.0.1:{polling_port}/api/v1/chat/completions"
            harness.wait_until(lambda: _answers(polling_url, sb.token), 30, "gunicorn (polling) to answer")
            _load(polling_url, sb.headers, WARM, 8)
            polled_s, polled_ms, _ = _load(polling_url, sb.headers, counts[1], 1)
            woken_s, woken_ms, _ = _load(f"{sb.base}/chat/completions", sb.headers, counts[1], 1)
        polled_p50, woken_p50 = harness.percentile(polled_ms, 50), harness.percentile(woken_ms, 50)
        rows.append(
            row("relay_wakeup_p50", woken_p50, "ms", "below polling", woken_p50 < polled_p50,
                baseline=polled_p50, ratio=woken_p50 / polled_p50)
        )  # fmt: skip
        ways = {"chat": (f"{sb.base}/chat/completions", chat_body), "messages": (f"{sb.base}/messages", message_body)}
        for way, (url, body) in ways.items():
            _load(url, sb.headers, WARM, 8, body)  # warm this way in, and its conversations
            for clients, count in counts.items():
                rows += _measure(way, url, body, sb.headers, sb.direct, sb.groups, count, clients)
    return rows


def run(url, headers, body, count: int, clients: int, groups) -> dict:
    """`count` requests from `clients` clients: req/s, p50 and p99 in ms, and ms of CPU per request by group."""
    before = {name: _cpu_seconds(procs) for name, procs in groups.items()}
    seconds, latencies, statuses = _load(url, headers, count, clients, body)
    spent = {name: _delta(before[name], _cpu_seconds(procs)) * 1000 / count for name, procs in groups.items()}
    return {
        "rps": count / seconds,
        "p50": harness.percentile(latencies, 50),
        "p99": harness.percentile(latencies, 99),
        "cpu": spent,
        "answered": statuses.count(200),
    }


def _measure(way, url, body, headers, direct, groups, count: int, clients: int) -> list[dict]:
    """One way in at one number of clients: the direct loop, then the relay, with CPU by process."""
    harness.wait_quiet()
    base = run(*direct, chat_body, count, clients, {})
    got = run(url, headers, body, count, clients, groups)
    added, cpu = got["p50"] - base["p50"], sum(got["cpu"].values())
    name = f"relay_{way}_{clients}_client"
    return [
        row(f"{name}_requests_per_second", got["rps"], "requests/s", "reported", None,
            baseline=base["rps"], ratio=got["rps"] / base["rps"], answered=got["answered"], requests=count),
        row(f"{name}_added_latency_p50", added, "ms", "≤ 5 ms" if clients == 1 else "reported",
            added <= 5 if clients == 1 else None, baseline=base["p50"], p50=got["p50"], p99=got["p99"]),
        row(f"{name}_cpu_per_request", cpu, "ms", "≤ 10 ms", cpu <= 10,
            **{f"{group}_ms": round(value, 2) for group, value in got["cpu"].items()}),
    ]  # fmt: skip


def _gunicorn(env, port: int, name: str):
    """The web process as the README runs it (config/gunicorn.py: processes and threads)."""
    argv = [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.py", "config.wsgi", "--bind", f"127.0.0.1:{port}",
            "--log-level", "warning"]  # fmt: skip
    return harness.process(argv, env, name, ready=lambda text: True)


def _answers(url: str, token: str) -> bool:
    try:
        return requests.post(url, json=BODY, headers={"Authorization": f"Bearer {token}"}, timeout=5).ok
    except requests.RequestException:
        return False
