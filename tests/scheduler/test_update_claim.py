"""A Rachel8 update's claim on a server (`jobs.update`): health repair, probes and an
operator's re-injection leave a claimed server to its update's health gate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
import redis

from core.platform.clock import ManualClock
from core.store.models import Event, Server
from jobs import health, operator, repair
from jobs.context import JobContext, use_context
from jobs.registry import JobFunction
from tests.scheduler.test_health import DOWN, T0, epoch, make_ctx, of, ready, row
from tests.stand_ins import Agents


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def ctx(
    db: peewee.Database, tmp_path: Path, redis_client: redis.Redis, clock: ManualClock
) -> Iterator[JobContext]:
    yield make_ctx(tmp_path, redis_client, clock)
    use_context(None)


@pytest.fixture
def agents(redis_client: redis.Redis) -> Agents:
    return Agents(redis_client)


def claim(server: Server, target: str = "41") -> None:
    Server.update(update_claim=target).where(Server.id == server.id).execute()


def release(server: Server) -> None:
    Server.update(update_claim=None).where(Server.id == server.id).execute()


def test_a_claimed_server_is_judged_but_neither_repaired_probed_nor_told(
    ctx: JobContext, agents: Agents, clock: ManualClock, redis_client: redis.Redis
) -> None:
    down, silent = ready(agents, 2)
    claim(down, "41")
    claim(silent, "42")
    agents.beat(down.id, epoch(clock), service=DOWN)
    agents.beat(silent.id, epoch(clock))
    health.run(ctx)
    clock.advance(80)  # `silent` is heard from no more
    agents.beat(down.id, epoch(clock), service=DOWN)
    summary = health.run(ctx)
    # The health is still decided (operators see it), but the update's gate owns the server.
    assert row(down).health == "unhealthy" and row(silent).health == "unhealthy"
    assert summary.acted == {}
    assert of(redis_client, JobFunction.REPAIR_SERVER) == []
    assert of(redis_client, JobFunction.PROBE_SERVER) == []
    assert of(redis_client, JobFunction.TELL_OWNER) == [], "the rollout rolls it back"
    # Released (the gate decided): the next pass repairs and probes as usual.
    release(down)
    release(silent)
    clock.advance(5)
    agents.beat(down.id, epoch(clock), service=DOWN)
    assert health.run(ctx).acted == {"restart": 1, "probe": 1}


def test_a_repair_or_probe_queued_before_the_claim_does_nothing(
    ctx: JobContext, agents: Agents, clock: ManualClock
) -> None:
    (server,) = ready(agents)
    claim(server)
    outcome = repair.repair_server(server.id, "restart", "restart 1 of 3", "")
    assert outcome == f"skipped: {repair.UPDATE_HOLDS}"
    (event,) = Event.select().where((Event.server == server.id) & (Event.kind == "repair"))
    assert event.message == f"restart not done: {repair.UPDATE_HOLDS}"
    assert repair.probe_server(server.id) == f"skipped: {repair.UPDATE_HOLDS}"


def test_an_operator_reinject_is_refused_while_an_update_holds_the_server(
    ctx: JobContext, agents: Agents, redis_client: redis.Redis
) -> None:
    (server,) = ready(agents)
    claim(server, "41")
    with pytest.raises(operator.OperatorError) as refused:
        operator.reinject(redis_client, server.id, "operator:alice")
    assert str(refused.value.message) == (
        f"server {server.id} is held by a rollout (target 41): updating, or watched after its "
        "update until the rollout ends; re-inject then, or abort the rollout (`rachel-cloud "
        "rollout status`)"
    )
    assert row(server).status == "ready", "nothing changed"
    release(server)
    done = operator.reinject(redis_client, server.id, "operator:alice")
    assert done.message == f"server {server.id} re-injecting secrets"
    assert row(server).status == "injecting_secrets"
