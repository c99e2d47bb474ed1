"""Rollouts of a Rachel8 release end to end: waves, the health gate, halts and rollbacks.

Real parts: servers deployed through the pipeline (the simulator's Hetzner
API, cloud-init calling back to the served web app, the SSH injection arming
the health agent, whose heartbeats reach the web app); the rollout started as
the CLI starts it (`core.domain.rollout_store.start`); the driver's cron task
and the health task queued as the cron queues them, and run by workers with
every job they queue (`jobs.update`'s updates and rollbacks over SSH, the
update script uploaded and run on the simulated VPS, whose systemd and agent
run the release switched to). The bad releases are the simulator's catalogue
(`sim.rachel8.BAD_RELEASES`), each failing as a real one does. Small fleets,
a gate of a couple of seconds, the simulator's time scale (0.01).
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import peewee
import pytest
import redis

from core.domain import releases, rollout_store
from core.domain.rollout_states import RolloutState, TargetState
from core.domain.rollout_store import RolloutOptions
from core.domain.rollout_waves import parse_waves
from core.store.models import Event, Rollout, RolloutTarget, Server
from jobs import operator
from jobs.cron import CRON_QUEUE, JOB_TIMEOUT, RESULT_TTL
from jobs.queues import queue
from jobs.registry import JobFunction
from sim.rachel8 import BAD_RELEASES, CURRENT_COMMIT, NEWER_COMMIT
from sim.server import SimulatorServer
from tests.pipeline.fleet import PASS_SECONDS, Fleet, served_fleet
from tests.pipeline.harness import WebServer
from tests.stand_ins import Receiver

REPO = Path(__file__).resolve().parents[2]
#: Seconds (the control plane's clock) without a heartbeat before a server is silent.
MISSING = 3.0
#: Each server's health gate, and the soak after each wave (real seconds): at the
#: simulator's time scale a 1.5 s gate is 150 s of the box's time, past `crash_later`'s minute.
GATE = 1.5
SOAK = 0.3
#: For `crash_later` (it exits 60 s of the box's time, 0.6 s here, after each start): a
#: gate that ends before the crash and a soak well past it, so the soak must catch it.
SHORT_GATE = 0.05
LONG_SOAK = 3.0
ENV = {
    "RACHEL_BOOT_TIMEOUT": "8s",
    # At the simulator's time scale (0.01): a heartbeat every 0.4 s. Not a divisor of
    # crash_later's 60.5 s (its start-up, then its minute): its gate sees a heartbeat
    # from before the crash even when the one the switch itself sends arrived before
    # the switch was recorded (no evidence), and the next heartbeat shows the crash.
    "RACHEL_HEARTBEAT_INTERVAL": "40s",
    "RACHEL_HEARTBEAT_MISSING": f"{MISSING:.0f}s",
    "RACHEL_HEALTH_INTERVAL": "1s",
    "RACHEL_ROLLOUT_STUCK_AFTER": "5s",
}


@pytest.fixture
def database_url(tmp_path: Path, postgres_url: str | None) -> str:
    """One database for these end-to-end tests, PostgreSQL when the run has it (production's),
    else SQLite: they test the jobs, not the backends (the integration tests run both), and
    CI's time is short."""
    return postgres_url or f"sqlite:///{tmp_path / 'test.db'}"


@pytest.fixture
def fleet(
    db: peewee.Database,
    sim: SimulatorServer,
    web: WebServer,
    redis_client: redis.Redis,
    redis_server_url: str,
    tmp_path: Path,
    receiver: Receiver,
) -> Iterator[Fleet]:
    with served_fleet(tmp_path, redis_client, redis_server_url, sim, web, receiver, **ENV) as built:
        yield built


# --- driving and reading a rollout ---------------------------------------------------


def start(
    fleet: Fleet,
    commit: str,
    waves: str = "canary,100%",
    in_flight: int = 2,
    gate: float = GATE,
    soak: float = SOAK,
) -> int:
    """A rollout of `commit` started as `rachel-cloud rollout start` does; its id."""
    if commit not in {r.commit for r in releases.list_releases(CURRENT_COMMIT)}:
        releases.add_release(commit, "under test", "operator:test")
    options = RolloutOptions(
        waves=parse_waves(waves),
        max_in_flight=in_flight,
        soak_seconds=soak,
        gate_seconds=gate,
        halt_share=0.3,
    )
    found = rollout_store.start(
        releases.resolve(commit), options, "operator:test", fleet.stack.settings.rachel8_commit
    )
    return int(found.id)


def tick(fleet: Fleet, health: bool = True) -> None:
    """The driver's cron task queued as the cron queues it; then a health pass, every job run."""
    queue(fleet.stack.redis, CRON_QUEUE).enqueue(
        JobFunction.ADVANCE_ROLLOUTS.path, job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL
    )
    if health:
        fleet.cron()
    else:
        fleet.stack.drain(lambda: True)


def judge_the_canary_soon(fleet: Fleet, rollout_id: int) -> None:
    """Once the canary switched, driver ticks back to back until its gate is judged.

    `crash_later` crashes 0.6 s (its minute) after the switch and its next
    heartbeat shows it: the gate of `SHORT_GATE` must be judged before that, on a
    shared machine too, so these ticks skip the health pass and the pause.
    """
    drive(fleet, canary_switched(rollout_id), "the canary to switch")
    deadline = time.monotonic() + 10
    while any(t.state == TargetState.GATING for t in targets(rollout_id).values()):
        assert time.monotonic() < deadline, states(fleet)
        tick(fleet, health=False)


def drive(fleet: Fleet, until: Callable[[], bool], what: str, timeout: float = 45.0) -> None:
    """Ticks every `PASS_SECONDS` until `until()` holds."""
    deadline = time.monotonic() + timeout
    while True:
        tick(fleet)
        if until():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {states(fleet)}")
        time.sleep(PASS_SECONDS)


def rollout(rollout_id: int) -> Rollout:
    found: Rollout = Rollout.get_by_id(rollout_id)
    return found


def targets(rollout_id: int) -> dict[int, RolloutTarget]:
    """The rollout's targets by server id."""
    query = RolloutTarget.select().where(RolloutTarget.rollout == rollout_id)
    return {t.server_id: t for t in query}


def states(fleet: Fleet) -> dict[str, object]:
    """What a failure message shows: each rollout and its targets' states."""
    return {
        f"rollout {r.id} {r.state} ({r.reason})": {
            t.server_id: f"{t.state} ({t.reason})" for t in targets(r.id).values()
        }
        for r in Rollout.select()
    }


def finished(rollout_id: int, *wanted: RolloutState) -> Callable[[], bool]:
    return lambda: rollout(rollout_id).state in wanted


def canary_switched(rollout_id: int) -> Callable[[], bool]:
    return lambda: any(t.switched_at is not None for t in targets(rollout_id).values())


def runs(fleet: Fleet, server: Server) -> str | None:
    """The commit the server's agent last reported (the box's `.git/HEAD` through the link)."""
    latest = fleet.heartbeat(server)
    return latest.heartbeat.commit if latest is not None else None


def all_healthy_on(fleet: Fleet, servers: list[Server], commit: str) -> Callable[[], bool]:
    def holds() -> bool:
        return all(
            fleet.row(s).health == "healthy"
            and fleet.row(s).rachel8_commit == commit
            and runs(fleet, s) == commit
            for s in servers
        )

    return holds


def updates(fleet: Fleet, server: Server) -> list[str]:
    """The update steps on the server's timeline, by their first words."""
    return [" ".join(m.split()[:2]) for m in fleet.events(server, "update")]


def timeline(fleet: Fleet, server: Server) -> list[str]:
    """The server's rollout Events (the driver's) and update Events (the jobs'), in order."""
    query = Event.select().where(
        (Event.server == server.id) & Event.kind.in_(["rollout", "update"])
    )
    return [e.message for e in query.order_by(Event.id)]


def in_order(messages: list[str], starts: list[str]) -> bool:
    """Whether messages beginning with each of `starts` come in that order."""
    found = iter(messages)
    return all(any(m.startswith(start) for m in found) for start in starts)


#: What the failed gate's heartbeat shows, by bad release.
BAD_HEARTBEATS = {
    "crash_at_start": ("systemd is restarting Rachel8", "Rachel8 is not running", "restarted"),
    "crash_later": ("systemd is restarting Rachel8", "Rachel8 is not running", "restarted"),
    "polling_fails": ("a webhook is set on the bot",),
}


# --- the tests -------------------------------------------------------------------


def test_a_good_release_rolls_out_wave_after_wave_and_becomes_the_fleets(fleet: Fleet) -> None:
    servers = fleet.deploy(4)
    rid = start(fleet, NEWER_COMMIT, waves="canary,50%,100%")
    drive(fleet, finished(rid, RolloutState.COMPLETED), "the rollout to complete")
    drive(fleet, all_healthy_on(fleet, servers, NEWER_COMMIT), "every server healthy on it")
    assert releases.current_commit(CURRENT_COMMIT) == NEWER_COMMIT, "the fleet's release now"
    done = targets(rid)
    assert {t.state for t in done.values()} == {TargetState.UPDATED}
    assert {t.from_commit for t in done.values()} == {CURRENT_COMMIT}
    # Waves in order: the canary (1), then up to 50% (1 more), then the rest (2), each
    # switched only after the wave before it passed its gates and soaked.
    waves = sorted(done.values(), key=lambda t: t.wave)
    assert [t.wave for t in waves] == [0, 1, 2, 2]
    for before, after in itertools.pairwise(waves):
        if after.wave > before.wave:
            assert before.finished_at is not None and after.switched_at is not None
            assert (after.switched_at - before.finished_at).total_seconds() >= SOAK
            assert (before.finished_at - before.switched_at).total_seconds() >= GATE
    for server in servers:
        row = fleet.row(server)
        assert row.update_claim is None, "every claim given back"
        assert updates(fleet, server)[:2] == ["updating Rachel8", "switched Rachel8"]
        assert fleet.events(server, "repair") == [] and fleet.events(server, "probe") == []
    metrics = httpx.get(f"{fleet.stack.settings.public_url}/metrics", timeout=10).text
    assert f'rachel_cloud_servers_release{{commit="{NEWER_COMMIT}"}} 4' in metrics
    assert f'rachel_cloud_rollout_targets{{rollout="{rid}",state="updated"}} 4' in metrics
    assert 'rachel_cloud_rollout_steps_total{kind="update",outcome="switched"} 4' in metrics


@pytest.mark.parametrize("kind", sorted(BAD_RELEASES))
def test_a_bad_release_halts_in_the_canary_and_is_rolled_back(fleet: Fleet, kind: str) -> None:
    bad = BAD_RELEASES[kind].commit
    servers = fleet.deploy(3)
    # crash_later passes a gate shorter than its minute: its soak must catch it.
    later = kind == "crash_later"
    gate, soak = (SHORT_GATE, LONG_SOAK) if later else (GATE, SOAK)
    rid = start(fleet, bad, waves="canary,100%", in_flight=1, gate=gate, soak=soak)
    if later:
        judge_the_canary_soon(fleet, rid)
    drive(fleet, finished(rid, RolloutState.ROLLED_BACK), "the halt and its rollback")
    drive(fleet, all_healthy_on(fleet, servers, CURRENT_COMMIT), "every server healthy again")
    assert (rollout(rid).reason or "").startswith("the canary failed: 1 of 1 server(s) failed")
    assert rollout(rid).wave == 0, "halted in the canary: wave 1 never began"
    assert releases.current_commit(CURRENT_COMMIT) == CURRENT_COMMIT
    done = targets(rid)
    (canary,) = [t for t in done.values() if t.wave == 0]
    others = [t for t in done.values() if t.wave != 0]
    assert {t.state for t in others} == {TargetState.SKIPPED}, "nothing after the canary"
    assert all(t.switched_at is None for t in others)
    (server,) = [s for s in servers if s.id == canary.server_id]
    if kind == "install_fails":
        # Nothing switched: the canary failed at its prepare (bun's frozen lockfile).
        assert canary.state == TargetState.FAILED and canary.switched_at is None
        assert (canary.reason or "").startswith(f"prepare failed: prepare {bad[:12]} failed at ")
        steps = ["updating Rachel8", "update failed, nothing switched"]
    else:
        assert canary.state == TargetState.ROLLED_BACK, canary.reason
        assert canary.switched_at is not None and canary.rollback_at is not None
        why, back = (canary.reason or "").split("; ")
        assert any(words in why for words in BAD_HEARTBEATS[kind]), why
        assert (
            back == f"rolled back to {CURRENT_COMMIT[:12]}: healthy on {CURRENT_COMMIT[:12]} for 0s"
        )
        # The soak catches crash_later after its short gate passed; on a machine too busy
        # to judge that gate within the crash's minute (0.6 s here), the gate catches it,
        # in the canary all the same. The soak's own path is proven without that race in
        # tests/scheduler/test_rollout_driver.py.
        by_soak = later and why.startswith("after its gate: ")
        judged = (
            [f"rollout {rid}: gate passed: ", f"rollout {rid}: failed after its gate (the canary)"]
            if by_soak
            else [f"rollout {rid}: gate failed: {why}"]
        )
        steps = [
            "updating Rachel8",
            "switched Rachel8",
            *judged,
            "rolled Rachel8 back",
            f"rollout {rid}: rolled back to {CURRENT_COMMIT[:12]}",
        ]
    assert in_order(timeline(fleet, server), steps), timeline(fleet, server)
    # 0 servers run it: every row, every agent says the previous commit, a while later too.
    fleet.heartbeats(server, 2)
    assert [fleet.row(s).rachel8_commit for s in servers] == [CURRENT_COMMIT] * 3
    assert [runs(fleet, s) for s in servers] == [CURRENT_COMMIT] * 3
    assert all(fleet.row(s).health == "healthy" for s in servers)
    assert all(fleet.row(s).update_claim is None for s in servers)
    # The gate owned it: no health repair, and its bad release told to no owner or operator.
    assert fleet.events(server, "repair") == [] and fleet.events(server, "probe") == []
    assert fleet.owner_messages(server) == [] and fleet.alerts(server) == []


def test_pause_holds_the_next_wave_and_resume_finishes_it(fleet: Fleet) -> None:
    servers = fleet.deploy(2)
    rid = start(fleet, NEWER_COMMIT, waves="canary,100%", in_flight=1)
    drive(fleet, canary_switched(rid), "the canary to switch")
    rollout_store.pause("operator:test")
    # The canary in flight finishes its gate; nothing else starts while paused.
    drive(
        fleet,
        lambda: (
            {t.state for t in targets(rid).values()} == {TargetState.UPDATED, TargetState.PENDING}
        ),
        "the canary's gate to end",
    )
    held_until = time.monotonic() + SOAK + 1.0  # a running rollout would start wave 1 by then
    while time.monotonic() < held_until:
        tick(fleet)
    assert rollout(rid).state == RolloutState.PAUSED
    assert sorted(t.state for t in targets(rid).values()) == [
        TargetState.PENDING,
        TargetState.UPDATED,
    ]
    rollout_store.resume("operator:test")
    drive(fleet, finished(rid, RolloutState.COMPLETED), "the rollout to complete")
    drive(fleet, all_healthy_on(fleet, servers, NEWER_COMMIT), "every server on it")


def test_a_server_deprovisioned_during_its_wave_is_skipped(fleet: Fleet) -> None:
    servers = fleet.deploy(3)
    rid = start(fleet, NEWER_COMMIT, waves="canary,100%", in_flight=1)
    drive(fleet, canary_switched(rid), "the canary to switch")
    (waiting, *_) = [t for t in targets(rid).values() if t.wave == 1]
    gone = next(s for s in servers if s.id == waiting.server_id)
    operator.deprovision(fleet.stack.redis, gone.id, "operator:test")
    drive(fleet, finished(rid, RolloutState.COMPLETED), "the rollout to complete")
    stayed = [s for s in servers if s.id != gone.id]
    drive(fleet, all_healthy_on(fleet, stayed, NEWER_COMMIT), "the others on it")
    skipped = targets(rid)[gone.id]
    assert skipped.state == TargetState.SKIPPED and skipped.switched_at is None
    assert "deprovisioned" in (skipped.reason or ""), skipped.reason
    assert fleet.row(gone).status in ("deprovisioning", "deleted")
    assert fleet.row(gone).update_claim is None


def worker(
    fleet: Fleet, tmp_path: Path, database_url: str, redis_url: str
) -> subprocess.Popen[bytes]:
    """A real `rachel-cloud worker` (forking work horses), in its own process group."""
    s = fleet.stack.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RACHEL_", "HCLOUD_"))}
    env.update(ENV)
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "RACHEL_DATA_DIR": str(tmp_path / "worker"),
            "RACHEL_WORKER_CLASS": "fork",
            "RACHEL_MASTER_KEYS": ",".join(s.master_keys or ()),
            "RACHEL_SIM_PORT": str(fleet.stack.sim.port),
            "RACHEL_PUBLIC_URL": s.public_url,
            "RACHEL_NAME_PREFIX": s.name_prefix,
            "RACHEL_TELEGRAM_API_URL": s.telegram_api_url,
        }
    )
    log = (tmp_path / "worker.log").open("a")
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker", "--name", "rollout-worker"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_a_worker_killed_mid_wave_and_the_rollout_resumes(
    fleet: Fleet, tmp_path: Path, database_url: str, redis_server_url: str
) -> None:
    servers = fleet.deploy(3)
    rid = start(fleet, NEWER_COMMIT, waves="canary,100%", in_flight=2)

    def enqueue_passes() -> None:
        for func in (JobFunction.ADVANCE_ROLLOUTS, JobFunction.CHECK_HEALTH):
            queue(fleet.stack.redis, CRON_QUEUE).enqueue(
                func.path, job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL
            )

    def until(holds: Callable[[], bool], what: str, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 60
        while not holds():
            assert process.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {states(fleet)}"
            enqueue_passes()
            time.sleep(PASS_SECONDS)

    first = worker(fleet, tmp_path, database_url, redis_server_url)
    second = None
    try:
        in_wave = {TargetState.UPDATING, TargetState.GATING}
        until(
            lambda: any(t.wave == 1 and t.state in in_wave for t in targets(rid).values()),
            "wave 1 under way",
            first,
        )
        os.killpg(first.pid, signal.SIGKILL)  # the worker, its work horse and its scheduler
        first.wait(timeout=10)
        killed = {t.server_id: t.state for t in targets(rid).values()}
        second = worker(fleet, tmp_path, database_url, redis_server_url)
        until(finished(rid, RolloutState.COMPLETED), "the rollout to complete", second)
        until(all_healthy_on(fleet, servers, NEWER_COMMIT), "every server on it", second)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
    assert any(state in in_wave for state in killed.values()), killed
    assert {t.state for t in targets(rid).values()} == {TargetState.UPDATED}
    assert all(fleet.row(s).update_claim is None for s in servers)
