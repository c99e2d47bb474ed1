"""The Procfile under honcho, against the local PostgreSQL and Redis, provisions a customer.

The cloud is the simulator (HCLOUD_ENDPOINT on loopback), as everywhere in tests.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import peewee
import pytest
import redis

from cli.demo import await_deploy, demo_payloads, send_signed
from core.security.crypto import generate_key_entry
from sim.config import SimConfig
from sim.server import SimulatorServer
from tests.stack.test_demo import free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
API_KEY = "procfile-test-api-key-0123456789"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    admin = os.environ.get("TEST_DATABASE_URL")
    if not admin:
        pytest.skip("needs PostgreSQL: TEST_DATABASE_URL (.ci/run sets it when one answers)")
    parts = urlsplit(admin)
    name = f"rc_procfile_{uuid.uuid4().hex[:8]}"
    db = peewee.PostgresqlDatabase(
        parts.path.lstrip("/") or "postgres",
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
    )
    db.execute_sql(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        db.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        db.close()


@pytest.fixture
def redis_url(redis_server_url: str) -> str:
    """The test Redis database of this test process (`tests/conftest.py`), flushed:
    under pytest-xdist, another process's tests use another database."""
    if not os.environ.get("TEST_REDIS_URL"):
        pytest.skip("needs a Redis server: TEST_REDIS_URL (.ci/run sets it)")
    redis.Redis.from_url(redis_server_url).flushdb()
    return redis_server_url


def test_procfile_processes_provision_a_customer(
    postgres_database: str, redis_url: str, tmp_path: Path
) -> None:
    procfile = {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip()
        for line in (REPO / "Procfile").read_text().splitlines()
        if ":" in line
    }
    assert set(procfile) == {"release", "web", "worker", "cron"}
    port = free_port()
    with SimulatorServer(SimConfig()) as sim:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("RACHEL_", "HCLOUD_", "DATABASE_URL", "REDIS_URL"))
        }
        env.update(
            {
                "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
                "DATABASE_URL": postgres_database,
                "REDIS_URL": redis_url,
                "HCLOUD_TOKEN": sim.token,
                "HCLOUD_ENDPOINT": sim.endpoint,
                "RACHEL_MASTER_KEYS": generate_key_entry(),
                "RACHEL_WEBHOOK_SECRETS": SECRET,
                "RACHEL_API_KEYS": API_KEY,
                "RACHEL_PUBLIC_URL": f"http://127.0.0.1:{port}",
                "RACHEL_WEB_HOST": "127.0.0.1",
                "RACHEL_DATA_DIR": str(tmp_path / "data"),
                "RACHEL_NAME_PREFIX": "procfile",
            }
        )
        release = subprocess.run(
            shlex.split(procfile["release"]),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert release.returncode == 0, release.stderr
        log = (tmp_path / "honcho.log").open("w")
        honcho = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "honcho",
                "-f",
                str(REPO / "Procfile"),
                "-d",
                str(tmp_path),
                "start",
                "-p",
                str(port),
                "web",
                "worker",
                "cron",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, (tmp_path / "honcho.log").read_text()
                time.sleep(0.2)
            subscription, deploy = demo_payloads(1)
            with httpx.Client(timeout=10) as client:
                send_signed(client, f"{base}/webhooks/subscription", SECRET, subscription)
                answer = send_signed(client, f"{base}/webhooks/deploy", SECRET, deploy)
                server_id = await_deploy(client, answer, API_KEY)
                status = ""
                deadline = time.monotonic() + 60
                while status != "ready" and time.monotonic() < deadline:
                    reply = client.get(
                        f"{base}/api/servers/{server_id}", headers={"X-API-Key": API_KEY}
                    )
                    status = reply.json()["status"]
                    time.sleep(0.2)
            assert status == "ready", (tmp_path / "honcho.log").read_text()[-3000:]
        finally:
            os.killpg(honcho.pid, signal.SIGTERM)
            try:
                honcho.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(honcho.pid, signal.SIGKILL)
            log.close()
