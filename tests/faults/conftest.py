"""A whole Switchboard of the test's own, to break: a PostgreSQL cluster, a Redis, the web server (gunicorn),
a worker, beat, the sandbox provider and a callback receiver, each a real process or server.

Nothing here touches the machine's shared PostgreSQL or Redis: the cluster is made with `initdb` in a
temporary folder (as the `postgres` user when the tests run as root, which `initdb` and `pg_ctl` refuse),
and stopped in immediate mode, as a crash would.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from bench.harness import free_port
from connectors.sandbox import SandboxServer
from tests.helpers import wait_until
from tests.processes import ROOT, start_beat, start_redis, start_worker, stop


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or name]
    return found[-1]


class OwnPostgres:
    """A PostgreSQL cluster in a temporary folder, on a port of its own."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="switchboard-pg-"))
        self.data, self.port = self.root / "data", free_port()
        os.chmod(self.root, 0o777)  # noqa: S103 - the postgres user writes its cluster here
        self._as_postgres([_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])
        self.start()
        subprocess.run(
            [_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "switchboard"], check=True
        )
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/switchboard"

    def _as_postgres(self, argv: list[str]) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(prefix + argv, check=True, capture_output=True)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._as_postgres(
            [_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start"]
        )

    def stop(self, mode: str = "immediate") -> None:
        self._as_postgres([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def query(self, sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url.replace("postgres://", "postgresql://"), autocommit=True) as connection:
            return connection.execute(sql).fetchall()

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class CallbackReceiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.received.append((self.headers.get("X-Switchboard-Delivery"), body["call_id"], body["status"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Stack:
    """Every process of a deployment, on the test's own PostgreSQL and Redis."""

    def __init__(self, tmp: Path, postgres: OwnPostgres):
        self.tmp, self.postgres, self.started = tmp, postgres, time.time()
        self.redis_port, self.web_port = free_port(), free_port()
        self.redis_socket = tmp / "redis.sock"
        self.redis = start_redis(self.redis_socket, self.redis_port)
        self.sandbox = SandboxServer(0, delay=0.3)
        self.sandbox.start_in_thread()
        self.receiver = ThreadingHTTPServer(("127.0.0.1", 0), CallbackReceiver)
        self.receiver.received, self.receiver.lock = [], threading.Lock()
        threading.Thread(target=self.receiver.serve_forever, daemon=True).start()
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "DATABASE_URL": postgres.url,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "ALLOWED_HOSTS": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            # The sweeper within seconds, not minutes.
            "CALL_SWEEP_INTERVAL_SECONDS": "1",
            "CALL_QUEUED_STALE_SECONDS": "3",
            "CALL_RUNNING_GRACE_SECONDS": "1",
            "OUTBOX_RECORD_PATIENCE_SECONDS": "10",  # longer than the outage: records wait it out
        }
        self.processes: list[subprocess.Popen] = []
        self.manage("migrate", "--noinput")
        self.world = json.loads(
            self.manage(
                "shell", "-c", SEED.format(sandbox=self.sandbox.base_url, receiver=self.receiver.server_port)
            ).splitlines()[-1]
        )
        self.web = self._web()
        self.processes.append(start_worker(self.env, tmp / "worker.log", name="faults", concurrency=16))
        self.processes.append(start_beat(self.env, tmp))

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def _web(self) -> subprocess.Popen:
        log = (self.tmp / "web.log").open("a")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "config.wsgi:application",
                "-b",
                f"127.0.0.1:{self.web_port}",
                "--workers",
                "2",
                "--threads",
                "8",
                "--timeout",
                "60",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes.append(process)
        wait_until(lambda: "Booting worker" in (self.tmp / "web.log").read_text(), 30, "gunicorn to start")
        return process

    def sandbox_outbox(self) -> list[dict]:
        """What the sandbox's Graph API took since this stack started (the outbox is the process's own)."""
        with requests.get(f"{self.sandbox.base_url.removesuffix('/v1')}/_sandbox/whatsapp/outbox", timeout=10) as r:
            return [m for m in r.json()["data"] if m["at"] >= self.started]

    def describe(self) -> str:
        """Where everything stands, for a failure's message: rows by status, deliveries, the logs' ends."""
        calls = self.postgres.query("SELECT status, count(*) FROM conversations_call GROUP BY status")
        outbound = self.postgres.query("SELECT kind, status, count(*) FROM conversations_outbound GROUP BY 1, 2")
        logs = "".join(
            f"\n--- {name}\n" + (self.tmp / name).read_text(errors="replace")[-3000:]
            for name in ("worker.log", "beat.log", "web.log")
            if (self.tmp / name).exists()
        )
        return (
            f"calls {calls}; outbound {outbound}; callbacks received {len(self.receiver.received)}; "
            f"WhatsApp sends {len([m for m in self.sandbox_outbox() if m['to'].startswith('1555030')])}{logs}"
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def restart_redis(self, down_for: float) -> None:
        self.redis.kill()
        self.redis.wait(10)
        time.sleep(down_for)
        self.redis = start_redis(self.redis_socket, self.redis_port)

    def close(self) -> None:
        for process in self.processes:
            stop(process)
        stop(self.redis)
        self.sandbox.shutdown()
        self.sandbox.server_close()
        self.receiver.shutdown()
        self.receiver.server_close()


# Made inside the stack's own database by `manage.py shell`: a connection to the sandbox, a template, an
# integration with a callback URL, a WhatsApp channel whose Graph API is the sandbox.
SEED = """
import json
from connectors.models import ProviderConnection
from connectors import crypto
from conversations.api.tokens import integration_create
from conversations.models import PromptTemplate, WhatsAppChannel
connection = ProviderConnection(name="Sandbox", base_url="{sandbox}", model="mistral-small-latest", timeout_seconds=5)
connection.set_api_key("sandbox-fault-key-0001")
connection.save()
template = PromptTemplate.objects.create(
    name="Support", system_prompt="Be brief.", user_message="{{{{customer_message}}}}"
)
integration, token = integration_create(name="Platform", templates=[template], connections=[connection],
                                        callback_url="http://127.0.0.1:{receiver}/hook")
channel = WhatsAppChannel.objects.create(name="Shop", phone_number_id="106540352242922", verify_token="v",
    app_secret_encrypted=crypto.encrypt("fault-app-secret"), access_token_encrypted=crypto.encrypt("graph-token"),
    graph_base_url="{sandbox}".removesuffix("/v1"), template=template, connection=connection)
from django.contrib.auth import get_user_model
get_user_model().objects.create_superuser("ops", password="ops-password-1")
print(json.dumps({{"token": token, "channel": channel.pk, "app_secret": "fault-app-secret"}}))
"""


@pytest.fixture
def own_postgres():
    if not shutil.which(_pg_bin("initdb")) and not os.path.exists(_pg_bin("initdb")):
        pytest.skip("PostgreSQL's initdb is not installed")
    postgres = OwnPostgres()
    yield postgres
    postgres.remove()


@pytest.fixture
def stack(tmp_path, own_postgres):
    built = Stack(tmp_path, own_postgres)
    yield built
    built.close()
