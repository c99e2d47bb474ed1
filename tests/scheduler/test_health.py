"""The health task with a controllable clock, a real database and Redis: heartbeats
recorded through the real `HeartbeatStore.record`, passes run, what they write and
queue checked (the queued probe and repair jobs run against the simulator in
tests/pipeline/test_health.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import peewee
import pytest
import redis
from rq import Queue

from core.domain import events
from core.domain.health import Finding, HealthState, Problem, Verdict
from core.domain.health_store import HealthMemory
from core.domain.heartbeats import HeartbeatStore, ServiceReport, TelegramReport
from core.domain.herd import HerdStore, pause_repair, resume_repair
from core.platform.clock import ManualClock
from core.platform.runs import read_runs
from core.security.crypto import KeyRing, generate_key_entry
from core.store.models import Event, Server
from jobs import health, health_fleet, health_writes
from jobs.context import JobContext, use_context
from jobs.queues import FINISH
from jobs.registry import JobFunction
from tests import factories
from tests.conftest import make_settings
from tests.stand_ins import COMMIT, Agents

T0 = datetime(2026, 3, 1, 12, 0, 0)
DOWN = ServiceReport("failed", "failed", 0, "exit-code", 1)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def make_ctx(
    tmp_path: Path, redis_client: redis.Redis, clock: ManualClock, **env: str
) -> JobContext:
    entry = generate_key_entry()
    settings = make_settings(
        tmp_path,
        RACHEL_MASTER_KEYS=entry,
        RACHEL_HEARTBEAT_MISSING="75s",
        RACHEL_HERD_MIN_SERVERS=env.pop("RACHEL_HERD_MIN_SERVERS", "3"),
        RACHEL_HERD_SHARE=env.pop("RACHEL_HERD_SHARE", "0.2"),
        **env,
    )
    ctx = JobContext(settings=settings, keyring=KeyRing([entry]), redis=redis_client, clock=clock)
    use_context(ctx)
    return ctx


@pytest.fixture
def ctx(
    db: peewee.Database, tmp_path: Path, redis_client: redis.Redis, clock: ManualClock
) -> Iterator[JobContext]:
    yield make_ctx(tmp_path, redis_client, clock)
    use_context(None)


@pytest.fixture
def agents(redis_client: redis.Redis) -> Agents:
    return Agents(redis_client)


def ready(agents: Agents | None, n: int = 1) -> list[Server]:
    made = []
    for i in range(n):
        server = factories.server(
            factories.paying_customer(KeyRing([generate_key_entry()])),
            status="ready",
            ready_at=T0,
            ipv4=f"10.0.0.{len(made) + 10 + i}",
            rachel8_commit=COMMIT,
        )
        server.name = f"test-{server.id}"
        server.save()
        if agents is not None:
            agents.enroll(server)
        made.append(Server.get_by_id(server.id))
    return made


def epoch(clock: ManualClock) -> float:
    return clock.now().replace(tzinfo=UTC).timestamp()


def row(server: Server) -> Server:
    found: Server = Server.get_by_id(server.id)
    return found


def health_events(server: Server) -> list[tuple[str | None, str | None, str]]:
    query = Event.select().where((Event.server == server.id) & (Event.kind == "health"))
    return [(e.from_status, e.to_status, e.message) for e in query.order_by(Event.id)]


def queued(client: redis.Redis) -> list[tuple[str, tuple[Any, ...]]]:
    return [(job.func_name, tuple(job.args)) for job in Queue(FINISH, connection=client).jobs]


def of(client: redis.Redis, func: JobFunction) -> list[tuple[Any, ...]]:
    return [args for name, args in queued(client) if name == func.path]


def test_first_heartbeat_then_nothing_changes_and_nothing_is_written(
    ctx: JobContext, agents: Agents, clock: ManualClock, redis_client: redis.Redis
) -> None:
    (server,) = ready(agents)
    summary = health.run(ctx)
    assert row(server).health == "unknown" and row(server).health_reason is None
    assert health_events(server) == [] and summary.found == {}
    pubsub = redis_client.pubsub()
    pubsub.subscribe(events.channel_for(redis_client))
    pubsub.get_message(timeout=1)
    clock.advance(10)
    agents.beat(server.id, epoch(clock))
    health.run(ctx)
    assert row(server).health == "healthy"
    assert row(server).health_changed_at == clock.now()
    assert health_events(server) == [("unknown", "healthy", "Rachel8 running, Telegram answering")]
    message = pubsub.get_message(timeout=2)
    assert message is not None
    assert json.loads(message["data"]) == {
        "type": "health",
        "server_id": server.id,
        "health": "healthy",
        "reason": "Rachel8 running, Telegram answering",
        "at": clock.now().isoformat(),
    }
    for _ in range(3):
        clock.advance(10)
        agents.beat(server.id, epoch(clock))
        summary = health.run(ctx)
        assert summary.found == {} and summary.acted == {}
    assert len(health_events(server)) == 1 and queued(redis_client) == []
    assert row(server).health_changed_at == T0 + timedelta(seconds=10)
    pubsub.close()


def test_a_down_service_is_unhealthy_repaired_once_and_its_owner_told(
    ctx: JobContext, agents: Agents, clock: ManualClock, redis_client: redis.Redis
) -> None:
    server, other = ready(agents, 2)
    agents.beat(server.id, epoch(clock), service=DOWN)
    agents.beat(other.id, epoch(clock))
    summary = health.run(ctx)
    assert row(server).health == "unhealthy"
    assert "Rachel8 is not running: failed/failed (exit-code" in (row(server).health_reason or "")
    assert summary.found == {"to_unhealthy": 1, "to_healthy": 1}
    assert summary.acted == {"restart": 1}
    (repair,) = of(redis_client, JobFunction.REPAIR_SERVER)
    assert repair[:3] == (server.id, "restart", "restart 1 of 3 in this incident")
    assert of(redis_client, JobFunction.TELL_OWNER) == [(server.id, "down", "service_down")]
    # The next passes queue nothing more: one repair at a time, the owner told once.
    clock.advance(10)
    agents.beat(server.id, epoch(clock), service=DOWN)
    assert health.run(ctx).acted == {}
    assert len(of(redis_client, JobFunction.REPAIR_SERVER)) == 1
    assert len(of(redis_client, JobFunction.TELL_OWNER)) == 1
    assert row(other).health == "healthy"


def test_a_systemd_restart_degrades_until_the_next_heartbeat(
    ctx: JobContext, agents: Agents, clock: ManualClock
) -> None:
    (server,) = ready(agents)
    agents.beat(server.id, epoch(clock))
    health.run(ctx)
    clock.advance(30)
    restarted = ServiceReport("active", "running", 1, "success", 0)
    agents.beat(server.id, epoch(clock), service=restarted)
    health.run(ctx)
    health.run(ctx)  # the same heartbeat judged again: still degraded, no new Event
    assert row(server).health == "degraded"
    clock.advance(30)
    agents.beat(server.id, epoch(clock), service=restarted)
    health.run(ctx)
    assert [to for _, to, _ in health_events(server)] == ["healthy", "degraded", "healthy"]
    assert health_events(server)[1][2] == "systemd restarted Rachel8 since the last heartbeat"


def test_a_silent_server_is_unhealthy_and_probed_once(
    ctx: JobContext, agents: Agents, clock: ManualClock, redis_client: redis.Redis
) -> None:
    (server,) = ready(agents)
    agents.beat(server.id, epoch(clock))
    health.run(ctx)
    clock.advance(74)
    health.run(ctx)
    assert row(server).health == "healthy" and queued(redis_client) == []
    clock.advance(1)
    summary = health.run(ctx)
    assert row(server).health == "unhealthy"
    assert row(server).health_reason == "no heartbeat for more than 75s; probing over SSH"
    assert summary.acted == {"probe": 1}
    assert of(redis_client, JobFunction.PROBE_SERVER) == [(server.id,)]
    assert of(redis_client, JobFunction.TELL_OWNER) == [], "silence alone is not told"
    clock.advance(10)
    assert health.run(ctx).acted == {}
    assert len(of(redis_client, JobFunction.PROBE_SERVER)) == 1


def test_a_probe_slower_than_its_back_off_is_followed_by_the_repair_it_calls_for(
    ctx: JobContext, agents: Agents, clock: ManualClock, redis_client: redis.Redis
) -> None:
    (server,) = ready(agents)
    agents.beat(server.id, epoch(clock))
    health.run(ctx)
    clock.advance(75)
    assert health.run(ctx).acted == {"probe": 1}
    # The probe started now and found the VPS unreachable, but only after the whole SSH
    # timeout (here: longer than the 75 s it would wait to probe the same again).
    memory = HealthMemory(redis_client)
    gone = Verdict(HealthState.UNHEALTHY, Problem.UNREACHABLE, "VPS unreachable over SSH")
    memory.store_finding(server.id, Finding(gone, clock.now()))
    memory.release(server.id)
    clock.advance(76)
    assert health.run(ctx).acted == {"reset": 1}, "the reset, not another probe"
    assert [args[1] for args in of(redis_client, JobFunction.REPAIR_SERVER)] == ["reset"]
    assert len(of(redis_client, JobFunction.PROBE_SERVER)) == 1


def test_a_server_never_heard_from_is_probed_after_the_grace(
    ctx: JobContext, agents: Agents, clock: ManualClock, redis_client: redis.Redis
) -> None:
    (server,) = ready(agents)
    (unwatched,) = ready(None)
    clock.advance(60)
    health.run(ctx)
    assert queued(redis_client) == []
    clock.advance(20)
    health.run(ctx)
    assert (
        row(server).health_reason
        == "no heartbeat on record, ready for more than 75s; probing over SSH"
    )
    assert of(redis_client, JobFunction.PROBE_SERVER) == [(server.id,)]
    assert row(unwatched).health == "unknown"
    assert (row(unwatched).health_reason or "").startswith("not watched")


@pytest.mark.parametrize(
    ("telegram", "words"),
    [
        (TelegramReport("unauthorized", False, 0), "bot token revoked"),
        (TelegramReport("ok", True, 0), "a webhook is set on the bot"),
        (TelegramReport("ok", False, 2), "another process polls this bot"),
    ],
)
def test_what_restarts_cannot_fix_tells_owner_and_operators_and_repairs_nothing(
    ctx: JobContext,
    agents: Agents,
    clock: ManualClock,
    redis_client: redis.Redis,
    telegram: TelegramReport,
    words: str,
) -> None:
    (server,) = ready(agents)
    agents.beat(server.id, epoch(clock), telegram=telegram)
    health.run(ctx)
    assert row(server).health == "unhealthy" and words in (row(server).health_reason or "")
    assert of(redis_client, JobFunction.REPAIR_SERVER) == []
    assert len(of(redis_client, JobFunction.TELL_OWNER)) == 1
    (alert,) = of(redis_client, JobFunction.ALERT_OPERATORS)
    assert alert[0] == server.id and words in alert[2] and "restarts do not fix" in alert[3]


def test_repair_off_still_decides_and_probes(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    clock: ManualClock,
    agents: Agents,
) -> None:
    ctx = make_ctx(tmp_path, redis_client, clock, RACHEL_REPAIR="false")
    try:
        down, silent = ready(agents, 2)
        agents.beat(down.id, epoch(clock), service=DOWN)
        agents.beat(silent.id, epoch(clock) - 100)
        health.run(ctx)
        assert row(down).health == row(silent).health == "unhealthy"
        assert of(redis_client, JobFunction.REPAIR_SERVER) == []
        assert of(redis_client, JobFunction.PROBE_SERVER) == [(silent.id,)]
    finally:
        use_context(None)


def test_an_operator_pause_holds_repairs_until_resumed(
    ctx: JobContext, agents: Agents, clock: ManualClock, redis_client: redis.Redis
) -> None:
    (server,) = ready(agents)
    pause_repair(redis_client, "operator:alice", "maintenance", clock)
    agents.beat(server.id, epoch(clock), service=DOWN)
    health.run(ctx)
    assert of(redis_client, JobFunction.REPAIR_SERVER) == []
    resume_repair(redis_client, "operator:alice", clock)
    clock.advance(10)
    health.run(ctx)
    assert [args[1] for args in of(redis_client, JobFunction.REPAIR_SERVER)] == ["restart"]


def test_the_herd_guard_trips_holds_repairs_and_probes_and_clears(
    ctx: JobContext, agents: Agents, clock: ManualClock, redis_client: redis.Redis
) -> None:
    fleet = ready(agents, 9)
    for server in fleet:
        agents.beat(server.id, epoch(clock))
    health.run(ctx)
    clock.advance(30)
    herd = fleet[:3]  # a third of the fleet goes silent at once
    for server in fleet[3:]:
        agents.beat(server.id, epoch(clock) + 50)
    clock.advance(50)
    summary = health.run(ctx)
    assert summary.acted == {"herd_trip": 1}
    assert [row(s).health for s in herd] == ["unhealthy"] * 3
    state, _ = HerdStore(redis_client).read()
    assert state.tripped and state.reason is not None
    assert state.reason.startswith("3 of 9 servers (33%) turned unhealthy within 300s")
    assert of(redis_client, JobFunction.PROBE_SERVER) == []
    (alert,) = of(redis_client, JobFunction.ALERT_OPERATORS)
    assert alert[:2] == (None, "herd guard tripped")
    trip = Event.get((Event.server.is_null()) & (Event.kind == "herd"))
    assert trip.message.startswith("herd guard tripped: 3 of 9") and trip.actor == "cron"
    # A server with a down service meanwhile is held too, and a second pass alerts no more.
    agents.beat(fleet[3].id, epoch(clock), service=DOWN)
    clock.advance(10)
    assert health.run(ctx).acted == {}
    assert of(redis_client, JobFunction.REPAIR_SERVER) == []
    assert of(redis_client, JobFunction.TELL_OWNER) == [], "owners are not messaged in a herd"
    assert len(of(redis_client, JobFunction.ALERT_OPERATORS)) == 1
    # The herd heard from again: the share drops, the guard clears, repairs resume.
    for server in herd:
        agents.beat(server.id, epoch(clock))
    clock.advance(10)
    summary = health.run(ctx)
    assert summary.acted == {"herd_clear": 1, "restart": 1}
    assert not HerdStore(redis_client).read()[0].tripped
    assert [args[:2] for args in of(redis_client, JobFunction.REPAIR_SERVER)] == [
        (fleet[3].id, "restart")
    ]
    kinds = [e.message.split(":")[0] for e in Event.select().where(Event.kind == "herd")]
    assert kinds == ["herd guard tripped", "herd guard cleared"]
    # Still down once the herd is over: an outage of its own, its owner is told now.
    told = of(redis_client, JobFunction.TELL_OWNER)
    assert [args[:2] for args in told] == [(fleet[3].id, "down")]


def test_an_operator_resume_clears_the_guard_and_the_herd_no_longer_counts(
    ctx: JobContext, agents: Agents, clock: ManualClock, redis_client: redis.Redis
) -> None:
    fleet = ready(agents, 6)
    for server in fleet[:3]:
        agents.beat(server.id, epoch(clock), service=DOWN)
    for server in fleet[3:]:
        agents.beat(server.id, epoch(clock))
    health.run(ctx)
    assert HerdStore(redis_client).read()[0].tripped
    assert of(redis_client, JobFunction.REPAIR_SERVER) == []
    clock.advance(5)
    resume_repair(redis_client, "operator:bob", clock)
    clock.advance(5)
    for server in fleet[:3]:
        agents.beat(server.id, epoch(clock), service=DOWN)
    summary = health.run(ctx)
    assert "herd_trip" not in summary.acted
    assert sorted(args[0] for args in of(redis_client, JobFunction.REPAIR_SERVER)) == sorted(
        s.id for s in fleet[:3]
    )


def test_a_row_changed_meanwhile_is_left_to_its_writer(
    ctx: JobContext, agents: Agents, clock: ManualClock
) -> None:
    (server,) = ready(agents)
    agents.beat(server.id, epoch(clock))
    servers = health_fleet.ready_servers()
    Server.update(health="degraded", health_reason="written by a probe").where(
        Server.id == server.id
    ).execute()
    judged = [
        health_fleet.Judged(servers[0], v.verdict, v.evidence_at, None)
        for v in health_fleet.judge_all(
            servers,
            HeartbeatStore(ctx.redis).all_latest(),
            HealthMemory(ctx.redis).recall(),
            clock.now(),
            health.HealthPolicy.from_settings(ctx.settings),
        )[0]
    ]
    assert health_writes.apply_verdicts(ctx, judged, clock.now()) == []
    assert row(server).health_reason == "written by a probe" and health_events(server) == []


def test_the_cron_task_records_its_run_without_a_fleet_event(
    ctx: JobContext, agents: Agents, clock: ManualClock, redis_client: redis.Redis
) -> None:
    (server,) = ready(agents)
    agents.beat(server.id, epoch(clock), service=DOWN)
    line = health.check_health()
    assert line.startswith("health: found 1 (to_unhealthy 1); did 1 (restart 1)")
    assert read_runs(redis_client, ("health",))["health"]["runs"] == "1"
    assert Event.select().where(Event.kind == "cron").count() == 0
