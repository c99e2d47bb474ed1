"""`rachel-cloud release add|list` and `rollout start|status|pause|resume|abort|rollback`,
run as an operator types them, on a real database and Redis."""

from __future__ import annotations

import json
from pathlib import Path

import peewee
import redis

from core.domain.releases import current
from core.store.models import Event, Release, Rollout, RolloutTarget
from jobs.enqueue import ROLLOUT_TICK_FLAG
from jobs.queues import FINISH, queue
from tests import factories
from tests.integration.test_cli import run
from tests.integration.test_cli_operator import _env, _error

SEED = "63f162e9302a66344772ab23653789f701c7bcf9"
NEW = "ab" * 20


def test_release_add_list_and_a_rollout_run_by_an_operator(
    tmp_path: Path,
    db: peewee.Database,
    database_url: str,
    redis_client: redis.Redis,
    redis_server_url: str,
) -> None:
    env = _env(tmp_path, database_url, redis_server_url)
    servers = [
        factories.server(status="ready", rachel8_commit=SEED, name=f"rc-{i}") for i in range(3)
    ]
    added = run("release", "add", NEW, "--notes", "fixes voice notes", "--operator", "alice",
                cwd=tmp_path, env=env)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert f"release {NEW[:12]} added" in added.stdout
    listed = run("release", "list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[1].startswith(f"  {NEW}") and "fixes voice notes" in lines[1]
    assert lines[2].startswith(f"* {SEED}") and "seeded from RACHEL8_COMMIT" in lines[2]
    rows = [
        json.loads(line)
        for line in run("release", "list", "--json", cwd=tmp_path, env=env).stdout.splitlines()
    ]
    assert [(r["commit"], r["current"], r["servers"]) for r in rows] == [
        (NEW, False, 0),
        (SEED, True, 3),
    ]

    started = run("rollout", "start", NEW[:9], "--waves", "canary,100%", "--max-in-flight", "2",
                  "--soak", "30s", "--gate", "45s", "--operator", "alice",
                  cwd=tmp_path, env=env)  # fmt: skip
    assert started.returncode == 0, started.stderr
    rollout = Rollout.get()
    assert f"rollout {rollout.id} of {NEW[:12]} started" in started.stdout
    assert (rollout.canary, json.loads(rollout.shares), rollout.max_in_flight) == (1, [1.0], 2)
    assert (rollout.soak_seconds, rollout.gate_seconds, rollout.halt_share) == (30, 45, 0.3)
    # The driver's tick is queued (once, however many actions ask for it).
    assert redis_client.exists(ROLLOUT_TICK_FLAG.format(rollout.id))
    assert len(queue(redis_client, FINISH).job_ids) == 1

    status = run("rollout", "status", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    assert f"rollout {rollout.id}: PLANNED  release {NEW} (fixes voice notes)" in status.stdout
    assert "canary      1 server(s): 1 pending <- current" in status.stdout
    assert "wave 1      2 server(s): 2 pending" in status.stdout
    assert "waves 1,100%; at most 2 in flight; gate 45s; soak 30s; halt above 30%" in status.stdout

    paused = run("rollout", "pause", "--operator", "bob", cwd=tmp_path, env=env)
    assert paused.returncode == 0 and f"rollout {rollout.id}: paused" in paused.stdout
    resumed = run("rollout", "resume", "--operator", "bob", cwd=tmp_path, env=env)
    assert resumed.returncode == 0 and "planned" not in resumed.stdout  # paused -> running

    # A halted canary, as the driver leaves it: the status says why, server by server.
    canary = RolloutTarget.get((RolloutTarget.rollout == rollout.id) & (RolloutTarget.wave == 0))
    RolloutTarget.update(
        state="rolled_back", reason="gate failed: unhealthy: Rachel8 is not running"
    ).where(RolloutTarget.id == canary.id).execute()
    Rollout.update(
        state="halted", reason="the canary failed: 1 of 1 server(s) failed their update"
    ).where(Rollout.id == rollout.id).execute()
    text = run("rollout", "status", cwd=tmp_path, env=env).stdout
    assert f"rollout {rollout.id}: HALTED" in text
    assert "why: the canary failed: 1 of 1 server(s) failed their update" in text
    assert (
        f"{canary.server_id:>6} " in text
        and "gate failed: unhealthy: Rachel8 is not running" in text
    )
    data = json.loads(run("rollout", "status", "--json", cwd=tmp_path, env=env).stdout)
    assert data["state"] == "halted" and data["live"] is True
    assert data["waves"][0] == {"wave": 0, "servers": 1, "states": {"rolled_back": 1}}
    assert {t["server_id"] for t in data["targets"]} == {s.id for s in servers}
    assert [e["actor"] for e in data["recent_events"]] == [
        "operator:alice",
        "operator:bob",
        "operator:bob",
    ]

    # A halted rollout whose servers are all back: nothing to roll back.
    _error(run("rollout", "rollback", cwd=tmp_path, env=env), "nothing to roll back")
    aborted = run(
        "rollout", "abort", "--reason", "bad build", "--operator", "carol", cwd=tmp_path, env=env
    )
    assert aborted.returncode == 0, aborted.stderr
    assert Rollout.get_by_id(rollout.id).reason == "aborted by operator:carol: bad build"
    fleet = Event.select().where(Event.server.is_null() & (Event.kind == "rollout"))
    assert fleet.count() == 4  # started, paused, resumed, aborted


def test_bad_input_is_refused_clearly_and_changes_nothing(
    tmp_path: Path,
    db: peewee.Database,
    database_url: str,
    redis_client: redis.Redis,
    redis_server_url: str,
) -> None:
    env = _env(tmp_path, database_url, redis_server_url)
    current(SEED)
    factories.server(status="ready", rachel8_commit=SEED)
    _error(run("release", "add", "main", cwd=tmp_path, env=env), "full 40-hex-digit commit id")
    _error(run("rollout", "start", "2" * 40, cwd=tmp_path, env=env), "unknown release")
    assert run("release", "add", NEW, cwd=tmp_path, env=env).returncode == 0
    _error(run("release", "add", NEW, cwd=tmp_path, env=env), "already exists")
    _error(run("rollout", "start", NEW, "--waves", "canary,10%,50%", cwd=tmp_path, env=env),
           "the last wave must be 100%")  # fmt: skip
    _error(run("rollout", "start", NEW, "--waves", "canary,50%,20%,100%", cwd=tmp_path, env=env),
           "must increase")  # fmt: skip
    _error(
        run("rollout", "start", NEW, "--soak", "soon", cwd=tmp_path, env=env), "expected a duration"
    )
    _error(run("rollout", "start", NEW, "--max-in-flight", "0", cwd=tmp_path, env=env),
           "--max-in-flight must be at least 1")  # fmt: skip
    _error(
        run("rollout", "start", NEW, "--halt-share", "1.5", cwd=tmp_path, env=env), "--halt-share"
    )
    _error(run("rollout", "start", SEED, cwd=tmp_path, env=env), "nothing to roll out")
    _error(
        run("rollout", "rollback", cwd=tmp_path, env=env), "nothing to roll back: no rollout yet"
    )
    _error(run("rollout", "pause", cwd=tmp_path, env=env), "no rollout to pause")
    assert Rollout.select().count() == 0 and RolloutTarget.select().count() == 0
    assert Release.select().count() == 2
    assert run("rollout", "status", cwd=tmp_path, env=env).stdout.startswith("no rollout yet")

    assert run("rollout", "start", NEW, cwd=tmp_path, env=env).returncode == 0
    _error(run("rollout", "start", NEW, cwd=tmp_path, env=env), "one rollout at a time")
    _error(run("rollout", "rollback", cwd=tmp_path, env=env), "pause or abort it first")
    assert Rollout.select().count() == 1
