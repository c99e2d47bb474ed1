"""`rachel-cloud server logs|restart|diagnose ID` and `server ID` on a ready simulated VPS.

The commands run as real processes, as an operator types them, against the
test database, Redis and the simulator's VPSs (real SSH, the pinned host key).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from core.cloud import vps_contract as vps
from core.domain import heartbeats
from core.domain.heartbeats import HeartbeatStore
from core.security.crypto import generate_ssh_keypair
from core.store.models import Event, Server
from tests import factories
from tests.integration.test_cli import run
from tests.pipeline import rachel8_vps
from tests.pipeline.harness import Stack
from tests.pipeline.test_customer_api import _ready
from tests.unit.core.domain.test_heartbeats import beat


def _cli(
    stack: Stack, database_url: str, redis_url: str, *args: str
) -> subprocess.CompletedProcess[str]:
    keys = stack.settings.master_keys or ()
    env = {
        "RACHEL_DATA_DIR": str(stack.settings.data_dir),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "RACHEL_MASTER_KEYS": ",".join(keys),
        "RACHEL_SIM_SSH_PORT": str(stack.settings.sim_ssh_port),
    }
    return run(*args, cwd=Path(stack.settings.data_dir).parent, env=env)


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, (out.stdout, out.stderr)
    return out.stdout


def _error(out: subprocess.CompletedProcess[str], message: str) -> None:
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stderr.startswith("error: ") and message in out.stderr, out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_logs_restart_and_diagnose_a_ready_server(
    served: Stack, database_url: str, redis_server_url: str
) -> None:
    server, planted = _ready(served)
    machine = served.sim.vps(server.provider_id or 0)
    assert machine is not None

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _cli(served, database_url, redis_server_url, *args)

    machine.systemd.systemctl(["stop", vps.SERVICE_UNIT])
    restarted = _ok(cli("server", "restart", str(server.id), "--operator", "alice"))
    assert f"server {server.id}: Rachel8 restarted: active/running" in restarted
    assert rachel8_vps.service(machine)["ActiveState"] == "active"
    repair = Event.get((Event.server == server.id) & (Event.kind == "repair"))
    assert repair.actor == "operator:alice"

    logs = _ok(cli("server", "logs", str(server.id), "-n", "500")).splitlines()
    assert any("Stopped" in line for line in logs), logs
    assert _ok(cli("server", "logs", str(server.id), "-n", "2")).splitlines() == logs[-2:]
    for secret in planted:
        assert secret not in "\n".join(logs)

    shown = _ok(cli("server", "diagnose", str(server.id)))
    assert "Rachel8        active/running" in shown
    assert f"commit         {server.rachel8_commit}" in shown
    assert "journal (last" in shown
    found = json.loads(_ok(cli("server", "diagnose", str(server.id), "--json", "-n", "5")))
    assert found["server_id"] == server.id
    assert found["service"]["running"] is True
    assert found["service"]["main_pid"].isdigit() and found["service"]["main_pid"] != "0"
    assert found["commit"] == server.rachel8_commit
    assert set(found["versions"]) == {"bun", "claude_code"}
    assert 1 <= len(found["journal"]) <= 5
    # What the VPS could not tell (the simulator's shell may not emulate every file)
    # is named as a problem, never silently missing.
    problems = " ".join(found["problems"])
    for part, value in (
        ("disk", found["disk_free_bytes"]),
        ("memory", found["memory_available_bytes"]),
        ("uptime", found["uptime_seconds"]),
        ("agent", found["agent_timer"]),
    ):
        assert (value is None) == (f"{part}:" in problems), (part, value, problems)
    for secret in planted:
        assert secret not in shown and secret not in json.dumps(found)


def test_server_id_shows_health_and_the_last_heartbeat(
    served: Stack, database_url: str, redis_server_url: str
) -> None:
    server = factories.server(
        status="ready", ipv4="198.51.100.7", health="degraded", health_reason="disk 95% full"
    )
    credential, digest = heartbeats.new_credential()
    heartbeats.register(served.redis, server.id, digest, "198.51.100.7")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _cli(served, database_url, redis_server_url, *args)

    silent = _ok(cli("server", str(server.id)))
    assert "health           degraded" in silent
    assert "health reason    disk 95% full" in silent
    assert "last heartbeat   none since" in silent
    sent = beat(seq=1)
    HeartbeatStore(served.redis).record(
        server.id, credential, "198.51.100.7", sent, body=heartbeats.encode(sent), now=time.time()
    )
    shown = _ok(cli("server", "show", str(server.id)))
    assert "last heartbeat   20" in shown and "UTC" in shown
    record = json.loads(_ok(cli("server", str(server.id), "--json")))
    assert record["health"] == "degraded" and record["last_heartbeat_at"]


def test_servers_that_cannot_be_asked_are_clear_errors(
    served: Stack, database_url: str, redis_server_url: str
) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _cli(served, database_url, redis_server_url, *args)

    for command in ("logs", "restart", "diagnose"):
        _error(cli("server", command, "999999"), "server 999999 does not exist")
    pending = factories.server(status="cloud_init")
    _error(cli("server", "restart", str(pending.id)), "is cloud_init, not ready")
    _error(cli("server", "logs", str(pending.id), "-n", "501"), "501 is not in the range")
    server, _ = _ready(served)
    Server.update(host_key=generate_ssh_keypair().public_openssh).where(
        Server.id == server.id
    ).execute()
    for command in ("logs", "restart", "diagnose"):
        _error(cli("server", command, str(server.id)), "cannot be reached over SSH")
