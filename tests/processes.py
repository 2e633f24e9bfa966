"""Start and stop the real processes the end-to-end and fault tests need: Redis, Celery workers, beat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conversations.management.commands.runbroker import redis_server_argv

from .helpers import wait_until

ROOT = Path(__file__).resolve().parent.parent


def start_redis(socket_path: Path, port: int = 0) -> subprocess.Popen:
    """A private, memory-only Redis on a unix socket, and a TCP port if given (restarting it loses every
    queued message)."""
    socket_path.unlink(missing_ok=True)
    process = subprocess.Popen(redis_server_argv(socket_path, port), stdout=subprocess.DEVNULL)
    wait_until(socket_path.exists, 10, "Redis to listen")
    return process


def start_worker(
    env: dict[str, str], log_path: Path, name: str = "worker", pool: str = "threads", concurrency: int = 8
) -> subprocess.Popen:
    """`celery -A config worker` in its own process group, so a test can kill -9 it with its children."""
    log = log_path.open("a")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            pool,
            "--concurrency",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"{name}@%h",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    process.log_path = log_path
    wait_until(
        lambda: f"{name}@" in _tail(log_path) and " ready." in _tail(log_path) or process.poll() is not None,
        30,
        f"the worker {name} to start",
    )
    if process.poll() is not None:
        raise RuntimeError(f"The Celery worker did not start:\n{log_path.read_text()}")
    return process


def start_beat(env: dict[str, str], workdir: Path) -> subprocess.Popen:
    log = (workdir / "beat.log").open("a")
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(workdir / "beat-schedule"),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill_hard(process: subprocess.Popen) -> None:
    """kill -9 the process and everything it started, as when a machine dies."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL) if _own_group(process) else process.kill()
        process.wait(10)


def _own_group(process: subprocess.Popen) -> bool:
    try:
        return os.getpgid(process.pid) == process.pid
    except ProcessLookupError:
        return False


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-20000:] if path.exists() else ""


def run_send_test(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`manage.py send_test` on the "Sandbox" connection and the "Support" template, in a process of its own."""
    return subprocess.run(
        [sys.executable, "manage.py", "send_test", "--connection", "Sandbox", "--template", "Support", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
