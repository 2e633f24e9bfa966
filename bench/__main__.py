"""`python -m bench [--quick] [--only NAME ...]`: run the benchmarks, print JSON lines, rewrite docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from . import harness

BENCHMARKS = [
    "pipeline",
    "added_latency",
    "in_flight",
    "memory",
    "rate_limit",
    "logs_at_scale",
    "inbound_api",
    "inbox_at_scale",
    "burst_window",
    "relay",
]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="Smaller counts: the whole suite in under two minutes.")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="Run only these benchmarks.")
    parser.add_argument("--no-docs", action="store_true", help="Do not rewrite docs/benchmarks.md.")
    parser.add_argument(
        "--peers", action="store_true", help="Only the relay against LiteLLM (make bench-peers installs it)."
    )
    args = parser.parse_args()

    env = harness.environment()
    import django

    django.setup()
    from . import data, peers, relay, suite, support, web

    data.prepare_database()
    results, started = [], time.monotonic()
    for name in ["relay_peers"] if args.peers else args.only or BENCHMARKS:
        data.clear_logs()
        modules = (suite, web, support, relay, peers)
        benchmark = next(getattr(module, name) for module in modules if hasattr(module, name))
        for result in benchmark(env, args.quick):
            result["benchmark"] = name
            print(json.dumps(result), flush=True)
            results.append(result)
    elapsed = time.monotonic() - started
    if not args.no_docs:
        (write_peers if args.peers else write_docs)(results, args, elapsed)
    return 0


PEERS_START, PEERS_END = "<!-- make bench-peers -->", "<!-- /make bench-peers -->"
DOCS = harness.ROOT / "docs" / "benchmarks.md"


def write_docs(results, args, elapsed: float) -> None:
    command = "make bench" + (" QUICK=1" if args.quick else "")
    lines = [
        "# Benchmarks",
        "",
        *_measured(command, elapsed),
        "",
        *_table(results),
        "",
        "What each one measures is in `bench/suite.py`, `bench/web.py`, `bench/support.py` and `bench/relay.py`;",
        "the README's Performance section explains the choices they led to.",
        "",
    ]
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text("\n".join(lines) + _peers_section())


def write_peers(results, args, elapsed: float) -> None:
    """The LiteLLM comparison, in its own section of docs/benchmarks.md: `make bench` keeps it as it is."""
    section = [
        PEERS_START,
        "## Against LiteLLM's proxy",
        "",
        *_measured("make bench-peers" + (" QUICK=1" if args.quick else ""), elapsed),
        "",
        "The same upstream (the sandbox), the same load client, rounds alternating LiteLLM and Switchboard's",
        "`/api/v1/chat/completions`; LiteLLM's CPU is its proxy's processes, Switchboard's is web, worker,",
        "PostgreSQL and Redis (`bench/peers.py`).",
        "",
        *_table(results),
        PEERS_END,
        "",
    ]
    text = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    if PEERS_START in text:
        text = text[: text.index(PEERS_START)].rstrip("\n") + "\n"
    DOCS.parent.mkdir(exist_ok=True)
    DOCS.write_text(text + "\n" + "\n".join(section))


def _peers_section() -> str:
    text = DOCS.read_text() if DOCS.exists() else ""
    if PEERS_START not in text:
        return ""
    return "\n" + text[text.index(PEERS_START) :]


def _python_speed() -> float:
    """Seconds of CPU for ten million additions in a bare Python loop: hosts of one machine kind differ
    (2.5x between two runs of this suite), and every figure here moves with it."""
    started, total = time.thread_time(), 0
    for n in range(10_000_000):
        total += n
    return time.thread_time() - started


def _measured(command: str, elapsed: float) -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    database = harness.describe(os.environ["DATABASE_URL"])
    broker = harness.describe(os.environ["CELERY_BROKER_URL"])
    return [
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` ({elapsed:.0f} s) on "
        f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"database {database}, broker {broker}; ten million additions in a bare Python loop took "
        f"{_python_speed():.2f} s of CPU (the host's speed: compare runs by it).",
        f"Commit {_commit()}. Each ratio compares with a baseline measured in the same run.",
    ]


def _table(results) -> list[str]:
    lines = [
        "| benchmark | figure | value | unit | baseline | ratio | goal | met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        met = {True: "yes", False: "**no**", None: "—"}[r["met"]]
        lines.append(
            f"| {r['benchmark']} | {r['name']} | {r['value']} | {r['unit']} | {_blank(r['baseline'])} | "
            f"{_blank(r['ratio'])} | {r['goal']} | {met} |"
        )
    return lines


def _blank(value) -> str:
    return "" if value is None else str(value)


def _commit() -> str:
    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=harness.ROOT, check=False
            ).stdout.strip()
            or "?"
        )
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
