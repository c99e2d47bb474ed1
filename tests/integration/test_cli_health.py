"""`rachel-cloud health status|pause|resume`, run as an operator types them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import peewee
import redis

from core.domain.herd import HerdStore
from core.platform.clock import utcnow
from core.store.models import Event
from tests import factories
from tests.integration.test_cli import run
from tests.integration.test_cli_operator import _env, _error


def test_status_pause_and_resume(
    tmp_path: Path,
    db: peewee.Database,
    database_url: str,
    redis_client: redis.Redis,
    redis_server_url: str,
) -> None:
    now = utcnow()
    factories.server(status="ready", health="healthy")
    factories.server(status="ready", health="degraded", health_reason="disk almost full")
    broken = factories.server(
        status="ready",
        name="rachel-broken",
        health="unhealthy",
        health_reason="Rachel8 is not running: failed/failed",
        breaker_until=now + timedelta(minutes=20),
    )
    factories.server(status="failed", health="unhealthy")  # not ready: not counted
    env = _env(tmp_path, database_url, redis_server_url)

    out = run("health", "status", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "ready servers: 3 (healthy 1, degraded 1, unhealthy 1, unknown 0)" in out.stdout
    assert "herd guard: clear" in out.stdout and "automatic repair: on" in out.stdout
    assert "circuit breakers open: 1" in out.stdout
    assert f"server {broken.id} (rachel-broken) until" in out.stdout
    assert "Rachel8 is not running: failed/failed" in out.stdout

    paused = run("health", "pause", "--reason", "Telegram outage", "--operator", "alice",
                 cwd=tmp_path, env=env)  # fmt: skip
    assert paused.returncode == 0, paused.stderr
    assert "paused fleet-wide by operator:alice: Telegram outage" in paused.stdout
    HerdStore(redis_client).trip(now, "4 of 9 servers (44%) turned unhealthy")
    data = json.loads(run("health", "status", "--json", cwd=tmp_path, env=env).stdout)
    assert data["health"] == {"healthy": 1, "degraded": 1, "unhealthy": 1, "unknown": 0}
    assert data["herd_guard"]["tripped"] is True
    assert data["herd_guard"]["reason"] == "4 of 9 servers (44%) turned unhealthy"
    assert data["paused"]["by"] == "operator:alice" and data["repair_enabled"] is True
    assert [b["server_id"] for b in data["breakers_open"]] == [broken.id]
    text = run("health", "status", cwd=tmp_path, env=env).stdout
    assert "herd guard: TRIPPED at" in text and "automatic repair: PAUSED by operator:alice" in text

    resumed = run("health", "resume", "--operator", "bob", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed by operator:bob: cleared the herd guard and lifted the pause" in resumed.stdout
    state, pause = HerdStore(redis_client).read()
    assert not state.tripped and pause is None and state.resumed_by == "operator:bob"
    again = run("health", "resume", "--operator", "bob", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "nothing to resume" in again.stdout
    fleet = Event.select().where(Event.server.is_null() & (Event.kind == "herd"))
    assert [e.actor for e in fleet.order_by(Event.id)] == ["operator:alice", "operator:bob"]
    # The fleet's own timeline is in the status: who paused and resumed, and why.
    text = run("health", "status", cwd=tmp_path, env=env).stdout
    assert "recent fleet events:" in text
    assert "operator:alice: automatic repair paused fleet-wide by operator:alice" in text
    recent = json.loads(run("health", "status", "--json", cwd=tmp_path, env=env).stdout)
    assert [e["actor"] for e in recent["recent_fleet_events"]] == [
        "operator:alice",
        "operator:bob",
    ]


def test_health_errors_are_clear(
    tmp_path: Path, db: peewee.Database, database_url: str, redis_server_url: str
) -> None:
    env = _env(tmp_path, database_url, redis_server_url)
    _error(run("health", "pause", cwd=tmp_path, env=env), "Missing option '--reason'")
    _error(run("health", "pause", "--reason", " ", cwd=tmp_path, env=env), "give a reason")
    bad = run("health", "resume", "--operator", "no one", cwd=tmp_path, env=env)
    _error(bad, "invalid actor")
    unreachable = _env(tmp_path, database_url, "redis://127.0.0.1:1/0")
    _error(run("health", "status", cwd=tmp_path, env=unreachable), "does not answer")
    _error(run("health", "resume", cwd=tmp_path, env=unreachable), "does not answer")
