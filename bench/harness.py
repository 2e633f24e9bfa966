"""Processes and data for the benchmarks: the database, the sandbox, workers; and small statistics."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run" / "bench"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/switchboard_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"


def environment() -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.bench",
        "DATABASE_URL": os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER_URL),
        "PYTHONUNBUFFERED": "1",
    }
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CELERY_BROKER_URL")})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(condition, seconds: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {seconds} s waiting for {what}")


def wait_quiet(busy_below: float = 0.15, seconds: float = 15) -> None:
    """Wait until the machine's CPUs are mostly idle (under `busy_below` over half a second), at most
    `seconds`: what one measurement left behind (autovacuum, WAL writes) must not slow the next one."""

    def busy_and_total():
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle and iowait
        return sum(fields) - idle, sum(fields)

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        busy, total = busy_and_total()
        time.sleep(0.5)
        busy2, total2 = busy_and_total()
        if total2 > total and (busy2 - busy) / (total2 - total) < busy_below:
            return


@contextmanager
def process(argv: list[str], env: dict[str, str], log_name: str, ready=None, ready_seconds: float = 30):
    RUN.mkdir(parents=True, exist_ok=True)
    log_path = RUN / f"{log_name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        proc.log_path = log_path
        try:
            if ready:
                wait_until(
                    lambda: ready(log_path.read_text(errors="replace")) or proc.poll() is not None,
                    ready_seconds,
                    log_name,
                )
                if proc.poll() is not None:
                    raise RuntimeError(f"{log_name} exited:\n{log_path.read_text()[-3000:]}")
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


@contextmanager
def sandbox(env, delay: float = 0.0, record: Path | None = None):
    port = free_port()
    argv = [sys.executable, "manage.py", "runsandbox", "--port", str(port), "--delay", str(delay), "--quiet"]
    if record:
        argv += ["--record", str(record)]
    with process(argv, env, f"sandbox-{port}", ready=lambda text: "listening" in text):
        yield f"http://127.0.0.1:{port}/v1"


@contextmanager
def worker(env, name: str = "bench", pool: str | None = None, concurrency: int | None = None, include: str = ""):
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "config",
        "worker",
        "--loglevel",
        "WARNING",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--hostname",
        f"{name}@%h",
    ]
    if pool:
        argv += ["--pool", pool]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if include:
        argv += ["--include", include]
    # WARNING level hides the "ready" line, so wait for the worker to answer a ping instead.
    with process(argv, env, f"worker-{name}") as proc:
        from config.celery import app

        wait_until(
            lambda: bool(app.control.ping(destination=[f"{name}@{socket.gethostname()}"], timeout=0.5)),
            60,
            f"worker {name} to answer",
        )
        yield proc


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    low, high = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (k - low)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def rss_kb(pid: int) -> int:
    """Resident memory of a process and its children, in KB (from /proc)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


# Which part of the pipeline a process is, from its command line.
ROLES = {"celery": "worker", "postgres": "postgresql", "redis-server": "redis", "runsandbox": "sandbox"}


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """A snapshot of every process's CPU time (user + system, its reaped children's included), with its role
    from ROLES; this process is "publisher" (it queues the sends, as the web process would). Linux /proc only.
    Compare two with cpu_used_by_role()."""
    ticks = os.sysconf("SC_CLK_TCK")
    snapshot: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # utime, stime, and cutime, cstime: a PostgreSQL backend that exits is counted in its postmaster.
        seconds = sum(int(v) for v in fields[11:15]) / ticks
        role = "publisher" if int(entry.name) == os.getpid() else "other"
        role = next((name for marker, name in ROLES.items() if marker in command), role)
        snapshot[int(entry.name)] = (role, seconds)
    return snapshot


def cpu_used_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds each role used between two snapshots, process by process (new processes from zero).

    A process that exited meanwhile now counts in its parent's children time, whole life included: its CPU
    before the first snapshot is taken off again.
    """
    used: dict[str, float] = {}
    for pid, (role, seconds) in after.items():
        earlier = before.get(pid)
        used[role] = used.get(role, 0.0) + seconds - (earlier[1] if earlier and earlier[0] == role else 0.0)
    for pid, (role, seconds) in before.items():
        if pid not in after:
            used[role] = used.get(role, 0.0) - seconds
    return used


def _children(pid: int) -> list[int]:
    try:
        kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def describe(url: str) -> str:
    """A service URL without credentials, for the report."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"
