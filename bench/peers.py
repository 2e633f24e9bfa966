"""`make bench-peers`: the relay against LiteLLM's proxy, in the same run, on the same upstream, with the same load.

Not in `make bench` or CI: it needs LiteLLM, which `make bench-peers` installs into a virtualenv of its own
(PEERS_VENV, under .run/; the version issue 16 measured, pinned in bench/requirements-peers.txt), never
into the project's. LiteLLM's proxy is started with a clean environment: it
reads DATABASE_URL from its environment and would then try to download a database client; it keeps its
model price map local instead of fetching it.

Each round measures the upstream alone, then LiteLLM and Switchboard (in turns first), each from a quiet
machine. This machine kind's speed moves by a third from one minute to the next, so one round proves little:
a figure is the median over the rounds (five in a full run), and a ratio the median of the rounds' own ratios,
each taken within seconds (`round_ratios` lists them, to judge the spread). The goals are issue 16's: at one
client, Switchboard adds at most half the latency LiteLLM adds over the upstream; at eight clients, it relays
at least twice LiteLLM's requests per second.
"""

from __future__ import annotations

import json
import os
import secrets
import statistics
from contextlib import contextmanager

import requests

from . import harness, relay
from .suite import row

PEERS_VENV = harness.ROOT / ".run" / "peers-venv"
MODEL = relay.BODY["model"]
MASTER_KEY = f"sk-{secrets.token_hex(24)}"  # a fresh one per run: LiteLLM refuses to start with a weak one
KEY = {"Authorization": f"Bearer {MASTER_KEY}"}


def relay_peers(env, quick: bool) -> list[dict]:
    executable = PEERS_VENV / "bin" / "litellm"
    if not executable.exists():
        raise SystemExit(f"LiteLLM is not installed in {PEERS_VENV}: run `make bench-peers`, which installs it.")
    counts = {1: 100, 8: 200} if quick else {1: 200, 8: 400}
    rounds = 1 if quick else 5
    rows = []
    with relay.serving(env) as sb, _litellm(executable, sb.upstream) as (proxy_url, proxy_groups):
        ways = {
            "direct": (sb.direct[0], sb.direct[1], {}),
            "litellm": (proxy_url, KEY, proxy_groups),
            "switchboard": (f"{sb.base}/chat/completions", sb.headers, sb.groups),
        }
        for clients, count in counts.items():
            got = {way: [] for way in ways}
            for n in range(rounds):
                # The upstream alone first, then the two relays, in turns first: neither always follows the other.
                order = ["direct", "litellm", "switchboard"] if n % 2 == 0 else ["direct", "switchboard", "litellm"]
                for way in order:
                    url, headers, groups = ways[way]
                    harness.wait_quiet()
                    got[way].append(relay.run(url, headers, relay.chat_body, count, clients, groups))
            rows += _rows(clients, got)
    return rows


def _over_rounds(runs: list[dict]) -> dict:
    """Rounds as one: medians of the rounds' req/s and p50s, CPU per request averaged."""
    groups = runs[0]["cpu"].keys()
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50": statistics.median(r["p50"] for r in runs),
        "cpu": sum(sum(r["cpu"][g] for g in groups) for r in runs) / len(runs),
        "answered": sum(r["answered"] for r in runs),
    }


def _paired(got: dict[str, list[dict]]) -> tuple[list[float], list[float]]:
    """Each round's own ratios, Switchboard to LiteLLM: added latency (over that round's upstream p50), and
    requests per second."""
    latency, throughput = [], []
    for direct, litellm, switchboard in zip(got["direct"], got["litellm"], got["switchboard"], strict=True):
        added = litellm["p50"] - direct["p50"]
        latency.append((switchboard["p50"] - direct["p50"]) / added if added > 0 else float("inf"))
        throughput.append(switchboard["rps"] / litellm["rps"])
    return latency, throughput


def _rows(clients: int, got: dict[str, list[dict]]) -> list[dict]:
    direct, litellm, switchboard = (_over_rounds(got[way]) for way in ("direct", "litellm", "switchboard"))
    latency_ratios, rps_ratios = _paired(got)
    latency_ratio, rps_ratio = statistics.median(latency_ratios), statistics.median(rps_ratios)
    name = f"peers_{clients}_client"
    added_litellm, added_switchboard = litellm["p50"] - direct["p50"], switchboard["p50"] - direct["p50"]
    rows = [
        row(f"{name}_litellm_requests_per_second", litellm["rps"], "requests/s", "reported", None,
            baseline=direct["rps"], ratio=litellm["rps"] / direct["rps"], answered=litellm["answered"]),
        row(f"{name}_switchboard_requests_per_second", switchboard["rps"], "requests/s",
            "≥ 2× LiteLLM" if clients > 1 else "reported", rps_ratio >= 2 if clients > 1 else None,
            baseline=litellm["rps"], ratio=rps_ratio, answered=switchboard["answered"],
            round_ratios=[round(r, 3) for r in rps_ratios]),
        row(f"{name}_litellm_added_latency_p50", added_litellm, "ms", "reported", None, baseline=direct["p50"]),
        row(f"{name}_switchboard_added_latency_p50", added_switchboard, "ms",
            "≤ ½ LiteLLM's" if clients == 1 else "reported", latency_ratio <= 0.5 if clients == 1 else None,
            baseline=added_litellm, ratio=latency_ratio, round_ratios=[round(r, 3) for r in latency_ratios]),
        row(f"{name}_litellm_cpu_per_request", litellm["cpu"], "ms", "reported", None),
        row(f"{name}_switchboard_cpu_per_request", switchboard["cpu"], "ms", "≤ 10 ms", switchboard["cpu"] <= 10,
            baseline=litellm["cpu"], ratio=switchboard["cpu"] / litellm["cpu"] if litellm["cpu"] else None),
    ]  # fmt: skip
    return rows


@contextmanager
def _litellm(executable, upstream: str):
    """LiteLLM's proxy on a free port, relaying MODEL to `upstream`, started with a clean environment: its chat
    completions URL, and its processes (for their CPU)."""
    port = harness.free_port()
    home = harness.RUN / "litellm-home"
    home.mkdir(parents=True, exist_ok=True)
    config = harness.RUN / "litellm.yaml"
    model = {"model": f"openai/{MODEL}", "api_base": upstream, "api_key": "sandbox-bench-key"}
    settings = {"master_key": MASTER_KEY}  # it checks each request's key, as Switchboard checks its token
    config.write_text(  # JSON is YAML
        json.dumps({"model_list": [{"model_name": MODEL, "litellm_params": model}], "general_settings": settings})
    )
    clean = {
        "PATH": f"{executable.parent}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # its price map from the package, not fetched
    }
    argv = [str(executable), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
    with harness.process(argv, clean, "litellm") as proc:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        harness.wait_until(lambda: _answers(url, proc), 120, "LiteLLM's proxy to answer", interval=0.5)
        relay._load(url, KEY, relay.WARM, 8)  # warm
        yield url, {"litellm": relay._tree(proc.pid)}


def _answers(url: str, proc) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"LiteLLM exited:\n{proc.log_path.read_text()[-3000:]}")
    try:
        return requests.post(url, json=relay.BODY, headers=KEY, timeout=10).ok
    except requests.RequestException:
        return False
