"""The rollout driver's tick with a controllable clock, a real database and Redis.

Heartbeats go through the real `HeartbeatStore.record`; the update and rollback
jobs are not run here (tests/pipeline/test_rollouts.py runs them against the
simulator): where a test needs one's outcome, it writes what the job writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import peewee
import pytest
import redis
from rq import Queue

from core.domain import rollout_store
from core.domain.heartbeats import ServiceReport
from core.domain.releases import add_release, current
from core.domain.rollout_store import RolloutOptions
from core.domain.rollout_waves import parse_waves
from core.platform.clock import ManualClock
from core.security.crypto import KeyRing, generate_key_entry
from core.store.models import Event, FleetRelease, Rollout, RolloutTarget, Server
from jobs.context import JobContext, use_context
from jobs.queues import UPDATE
from jobs.rollout import advance_rollout, advance_rollouts
from jobs.update import rollback_job_id, update_job_id
from tests import factories
from tests.conftest import make_settings
from tests.stand_ins import COMMIT, Agents

T0 = datetime(2026, 3, 1, 12, 0, 0)
NEW = "1" * 40


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def ctx(
    db: peewee.Database, tmp_path: Path, redis_client: redis.Redis, clock: ManualClock
) -> Iterator[JobContext]:
    entry = generate_key_entry()
    settings = make_settings(
        tmp_path, RACHEL_MASTER_KEYS=entry, RACHEL8_COMMIT=COMMIT,
        RACHEL_HEARTBEAT_MISSING="75s", RACHEL_ROLLOUT_STUCK_AFTER="10m",
    )  # fmt: skip
    made = JobContext(settings=settings, keyring=KeyRing([entry]), redis=redis_client, clock=clock)
    use_context(made)
    yield made
    use_context(None)


def fleet(agents: Agents, n: int) -> list[Server]:
    servers = []
    for i in range(n):
        server = factories.server(
            status="ready", rachel8_commit=COMMIT, ipv4=f"10.0.1.{i + 10}",
            location=("fsn1", "nbg1")[i % 2], health="healthy",
        )  # fmt: skip
        agents.enroll(server)
        servers.append(server)
    return servers


def start(clock: ManualClock, **changes: object) -> Rollout:
    current(COMMIT, clock)
    values: dict[str, object] = {
        "waves": parse_waves("canary,100%"),
        "max_in_flight": 2,
        "soak_seconds": 30.0,
        "gate_seconds": 60.0,
        "halt_share": 0.3,
    }
    values.update(changes)
    release = add_release(NEW, "", "operator:alice", clock)
    return rollout_store.start(
        release,
        RolloutOptions(**values),
        "operator:alice",
        COMMIT,
        clock,  # type: ignore[arg-type]
    )


def targets(rollout: Rollout) -> list[RolloutTarget]:
    query = RolloutTarget.select().where(RolloutTarget.rollout == rollout.id)
    return list(query.order_by(RolloutTarget.position))


def queued(client: redis.Redis) -> list[str]:
    return list(Queue(UPDATE, connection=client).job_ids)


def switched(target: RolloutTarget, clock: ManualClock) -> None:
    """What `jobs.update.update_server` writes once it switched the server."""
    Server.update(rachel8_commit=target.to_commit, update_claim=str(target.id)).where(
        Server.id == target.server_id
    ).execute()
    RolloutTarget.update(state="gating", switched_at=clock.now()).where(
        RolloutTarget.id == target.id
    ).execute()


def epoch(clock: ManualClock) -> float:
    return clock.now().replace(tzinfo=UTC).timestamp()


def test_a_good_rollout_goes_canary_gate_soak_wave_and_completes(
    ctx: JobContext, clock: ManualClock, redis_client: redis.Redis
) -> None:
    agents = Agents(redis_client)
    fleet(agents, 3)
    rollout = start(clock)
    advance_rollout(rollout.id)
    canary, *rest = targets(rollout)
    assert Rollout.get_by_id(rollout.id).state == "running"
    assert (canary.wave, canary.state, canary.started_at) == (0, "updating", T0)
    assert [t.state for t in rest] == ["pending", "pending"]
    assert queued(redis_client) == [update_job_id(canary.id)]

    switched(canary, clock)
    clock.advance(5)
    agents.beat(canary.server_id, epoch(clock), commit=NEW)
    advance_rollout(rollout.id)  # healthy, but the gate lasts 60 s
    assert RolloutTarget.get_by_id(canary.id).state == "gating"
    clock.advance(60)
    agents.beat(canary.server_id, epoch(clock), commit=NEW)
    advance_rollout(rollout.id)
    passed = RolloutTarget.get_by_id(canary.id)
    assert (passed.state, passed.reason) == ("updated", f"healthy on {NEW[:12]} for 60s")
    # Held while the rollout watches it: health repair leaves it to the rollout.
    assert Server.get_by_id(canary.server_id).update_claim == str(canary.id)
    assert Rollout.get_by_id(rollout.id).soak_until == clock.now() + timedelta(seconds=30)
    assert [t.state for t in targets(rollout)[1:]] == ["pending", "pending"]  # soaking

    clock.advance(30)
    advance_rollout(rollout.id)
    assert Rollout.get_by_id(rollout.id).wave == 1
    assert [t.state for t in targets(rollout)[1:]] == ["updating", "updating"]
    for t in targets(rollout)[1:]:
        switched(t, clock)
    clock.advance(61)
    for t in targets(rollout):  # the canary too: it is watched while wave 1 goes on
        agents.beat(t.server_id, epoch(clock), commit=NEW)
    advance_rollout(rollout.id)
    clock.advance(30)
    advance_rollout(rollout.id)
    done = Rollout.get_by_id(rollout.id)
    assert (done.state, done.finished_at) == ("completed", clock.now())
    assert [Server.get_by_id(t.server_id).update_claim for t in targets(rollout)] == [None] * 3
    assert FleetRelease.get_by_id(1).release_id == done.release_id  # new servers get it
    fleet_events = [
        e.message.split(": ", 1)[1]
        for e in Event.select().where(Event.server.is_null() & (Event.kind == "rollout"))
    ]
    assert fleet_events[1:] == [
        "running",
        "the canary done (1 updated); soaking 30s",
        "wave 1 begins: 2 server(s)",
        "wave 1 done (2 updated); soaking 30s",
        "completed: 3 updated, 0 failed, 0 skipped",
    ]
    server_events = [
        e.message
        for e in Event.select().where(
            (Event.server == canary.server_id) & (Event.kind == "rollout")
        )
    ]
    assert server_events == [
        f"rollout {rollout.id}: the canary: updating Rachel8 from {COMMIT[:12]} to {NEW[:12]}",
        f"rollout {rollout.id}: gate passed: healthy on {NEW[:12]} for 60s",
    ]


def test_a_canary_failing_its_gate_halts_and_is_rolled_back(
    ctx: JobContext, clock: ManualClock, redis_client: redis.Redis
) -> None:
    agents = Agents(redis_client)
    fleet(agents, 4)
    rollout = start(clock, waves=parse_waves("2,100%"))
    advance_rollout(rollout.id)
    first, second, *rest = targets(rollout)
    switched(first, clock)
    clock.advance(5)
    agents.beat(first.server_id, epoch(clock), commit=NEW, service=None)
    advance_rollout(rollout.id)
    failed = RolloutTarget.get_by_id(first.id)
    assert failed.state == "rolling_back" and failed.reason.startswith("unhealthy")
    halted = Rollout.get_by_id(rollout.id)
    assert halted.state == "halted"
    assert halted.reason == "the canary failed: 1 of 2 server(s) failed their update"
    assert [RolloutTarget.get_by_id(t.id).state for t in rest] == ["skipped", "skipped"]
    assert rollback_job_id(first.id) in queued(redis_client)
    assert Server.get_by_id(first.server_id).update_claim == str(first.id)  # held for the rollback

    # The second canary server was still updating: rolled back once it switched.
    switched(second, clock)
    advance_rollout(rollout.id)
    assert RolloutTarget.get_by_id(second.id).state == "rolling_back"
    # The rollback jobs switched back (as jobs.update.rollback_server writes it) ...
    for t in (first, second):
        Server.update(rachel8_commit=COMMIT).where(Server.id == t.server_id).execute()
        RolloutTarget.update(rollback_at=clock.now()).where(RolloutTarget.id == t.id).execute()
    clock.advance(3)
    for t in (first, second):
        agents.beat(t.server_id, epoch(clock), commit=COMMIT)
    advance_rollout(rollout.id)
    assert [RolloutTarget.get_by_id(t.id).state for t in (first, second)] == ["rolled_back"] * 2
    ended = Rollout.get_by_id(rollout.id)
    assert ended.state == "rolled_back"
    assert ended.reason == "the canary failed: 1 of 2 server(s) failed their update"
    assert FleetRelease.get_by_id(1).release.commit == COMMIT
    assert all(Server.get_by_id(t.server_id).update_claim is None for t in (first, second))
    assert Server.select().where(Server.rachel8_commit == NEW).count() == 0


def pass_the_canary(
    rollout: Rollout, agents: Agents, clock: ManualClock
) -> tuple[RolloutTarget, list[RolloutTarget]]:
    """Start the rollout and pass its canary's gate; the canary and the rest."""
    advance_rollout(rollout.id)
    canary, *rest = targets(rollout)
    switched(canary, clock)
    clock.advance(61)
    agents.beat(canary.server_id, epoch(clock), commit=NEW)
    advance_rollout(rollout.id)
    assert RolloutTarget.get_by_id(canary.id).state == "updated"
    return canary, rest


def test_the_canary_crashing_in_its_soak_halts_the_rollout_before_wave_1(
    ctx: JobContext, clock: ManualClock, redis_client: redis.Redis
) -> None:
    agents = Agents(redis_client)
    fleet(agents, 3)
    rollout = start(clock)
    canary, rest = pass_the_canary(rollout, agents, clock)
    assert Rollout.get_by_id(rollout.id).soak_until == clock.now() + timedelta(seconds=30)
    clock.advance(10)
    agents.beat(canary.server_id, epoch(clock), commit=NEW)
    advance_rollout(rollout.id)  # still healthy: still soaking
    assert RolloutTarget.get_by_id(canary.id).state == "updated"

    # crash_later: a minute after its start it exits; systemd is restarting it (seen in
    # auto-restart after a restart since the switch: crash-looping, issue 22's rule).
    clock.advance(10)
    crashed = ServiceReport("activating", "auto-restart", 1, "exit-code", 1)
    agents.beat(canary.server_id, epoch(clock), commit=NEW, service=crashed)
    advance_rollout(rollout.id)
    failed = RolloutTarget.get_by_id(canary.id)
    why = "after its gate: unhealthy: Rachel8 is not running: activating/auto-restart (exit-code, "
    assert failed.state == "rolling_back" and failed.reason.startswith(why), failed.reason
    halted = Rollout.get_by_id(rollout.id)
    assert (halted.state, halted.wave) == ("halted", 0), "wave 1 never began"
    assert halted.reason == "the canary failed: 1 of 1 server(s) failed their update"
    assert [RolloutTarget.get_by_id(t.id).state for t in rest] == ["skipped", "skipped"]
    assert queued(redis_client) == [update_job_id(canary.id), rollback_job_id(canary.id)]
    assert Server.get_by_id(canary.server_id).update_claim == str(canary.id), "kept for it"
    events = [e.message for e in Event.select().where(Event.server == canary.server_id)]
    assert f"rollout {rollout.id}: failed after its gate (the canary): {failed.reason}" in events


def test_a_server_silent_after_its_gate_fails_and_an_aborted_rollout_gives_claims_back(
    ctx: JobContext, clock: ManualClock, redis_client: redis.Redis
) -> None:
    agents = Agents(redis_client)
    fleet(agents, 4)
    rollout = start(clock, waves=parse_waves("canary,100%"), halt_share=0.5, max_in_flight=3)
    canary, rest = pass_the_canary(rollout, agents, clock)
    clock.advance(30)
    agents.beat(canary.server_id, epoch(clock), commit=NEW)
    advance_rollout(rollout.id)
    assert Rollout.get_by_id(rollout.id).wave == 1
    for t in rest:
        switched(t, clock)
    clock.advance(61)
    for t in (canary, *rest):
        agents.beat(t.server_id, epoch(clock), commit=NEW)
    advance_rollout(rollout.id)
    assert [RolloutTarget.get_by_id(t.id).state for t in rest] == ["updated"] * 3

    # One server of wave 1 goes silent: failed after 75 s, 1 of 3 is within the halt share.
    quiet, *others = rest
    clock.advance(75)
    for t in (canary, *others):
        agents.beat(t.server_id, epoch(clock), commit=NEW)
    advance_rollout(rollout.id)
    gone = RolloutTarget.get_by_id(quiet.id)
    assert gone.state == "rolling_back"
    assert gone.reason == "silent after its gate: no heartbeat for more than 75s"
    assert Rollout.get_by_id(rollout.id).state == "running"
    assert [RolloutTarget.get_by_id(t.id).state for t in others] == ["updated"] * 2

    # Aborted: the updated servers keep the release and get their claims back; the
    # one rolling back keeps its claim until its rollback is done.
    rollout_store.abort("operator:alice", clock=clock)
    assert [Server.get_by_id(t.server_id).update_claim for t in (canary, *others)] == [None] * 3
    assert Server.get_by_id(quiet.server_id).update_claim == str(quiet.id)


def test_a_paused_rollout_starts_nothing_and_a_lost_update_is_queued_again(
    ctx: JobContext, clock: ManualClock, redis_client: redis.Redis
) -> None:
    agents = Agents(redis_client)
    fleet(agents, 2)
    rollout = start(clock, waves=parse_waves("2,100%"), max_in_flight=1)
    advance_rollout(rollout.id)
    first, second = targets(rollout)
    rollout_store.pause("operator:bob", clock)
    Queue(UPDATE, connection=redis_client).empty()  # the worker died with the job
    clock.advance(599)
    assert advance_rollouts() == "rollout: found 1 (rollout 1); did 0; 0 errors"
    assert RolloutTarget.get_by_id(second.id).state == "pending"
    assert RolloutTarget.get_by_id(first.id).started_at == T0
    clock.advance(1)
    advance_rollout(rollout.id)
    assert RolloutTarget.get_by_id(first.id).started_at == clock.now()
    assert queued(redis_client) == [update_job_id(first.id)]
    assert RolloutTarget.get_by_id(second.id).state == "pending"  # still paused
    rollout_store.resume("operator:bob", clock)
    switched(first, clock)
    clock.advance(61)
    agents.beat(first.server_id, epoch(clock), commit=NEW)
    advance_rollout(rollout.id)
    assert RolloutTarget.get_by_id(second.id).state == "updating"


def test_a_server_deprovisioned_during_its_gate_is_skipped_not_failed(
    ctx: JobContext, clock: ManualClock, redis_client: redis.Redis
) -> None:
    agents = Agents(redis_client)
    fleet(agents, 1)
    rollout = start(clock, soak_seconds=0.0)
    advance_rollout(rollout.id)
    (target,) = targets(rollout)
    switched(target, clock)
    Server.update(status="deprovisioning").where(Server.id == target.server_id).execute()
    advance_rollout(rollout.id)
    left = RolloutTarget.get_by_id(target.id)
    assert (left.state, left.reason) == (
        "skipped",
        "the server left ready (deprovisioning) during its gate",
    )
    assert Rollout.get_by_id(rollout.id).state == "completed"
