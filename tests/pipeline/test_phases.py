"""Phase jobs end to end against the simulator (no web app: callbacks not involved)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
import redis
from rq.job import Job
from rq.registry import ScheduledJobRegistry

from core.domain.events import channel_for
from core.domain.lifecycle import Status
from core.store.models import Event, Server
from jobs import operator
from jobs.context import use_context
from jobs.creating import create_server
from jobs.enqueue import start_provisioning
from jobs.outcomes import fail
from jobs.queues import FINISH, job_id, unschedule
from jobs.work import RQWork
from sim.server import SimulatorServer
from tests import factories
from tests.pipeline.harness import Stack, build_stack


@pytest.fixture
def stack(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    sim: SimulatorServer,
    request: pytest.FixtureRequest,
) -> Iterator[Stack]:
    # Short boot deadline for the deadline test only: under load a 1 s deadline
    # would also fire in tests that are not about it.
    boot = "1s" if "boot_deadline" in request.node.name else "10s"
    yield build_stack(tmp_path, redis_client, sim, RACHEL_BOOT_TIMEOUT=boot)
    use_context(None)


def deploy(stack: Stack) -> Server:
    owner = factories.paying_customer(stack.ring)
    result = operator.deploy(stack.redis, stack.settings, owner.external_id, "operator:test")
    server: Server = Server.get_by_id(result.server_id)
    return server


def test_creating_makes_one_vps_with_one_create_call(stack: Stack) -> None:
    warm = deploy(stack)  # first server: the firewall and fleet key get created and cached
    warm = stack.wait_status(warm.id, Status.CLOUD_INIT)
    calls = stack.ctx.hetzner.call_count()
    server = deploy(stack)
    row = stack.wait_status(server.id, Status.CLOUD_INIT)
    assert stack.ctx.hetzner.call_count() - calls == 1, stack.ctx.hetzner.calls
    assert row.provider_id and row.ipv4 and row.ssh_public_key and row.callback_token_hash
    assert row.attempt == 1 and row.deadline_at is not None
    assert sorted(stack.provider_servers()) == sorted([warm.provider_id or 0, row.provider_id])
    kinds = [(e.from_status, e.to_status) for e in Event.select().where(Event.server == row.id)]
    assert kinds == [(None, "pending"), ("pending", "creating"), ("creating", "cloud_init")]


def test_the_server_records_the_commit_its_user_data_pins(stack: Stack) -> None:
    server = deploy(stack)
    row = stack.wait_status(server.id, Status.CLOUD_INIT)
    assert row.rachel8_commit == stack.settings.rachel8_commit
    simulator = stack.sim.simulator
    with simulator.lock:
        user_data = simulator.store.servers[row.provider_id or 0].user_data or ""
    assert f"RACHEL8_COMMIT={row.rachel8_commit}\n" in user_data


def test_a_job_run_twice_changes_nothing(stack: Stack) -> None:
    server = deploy(stack)
    stack.wait_status(server.id, Status.CLOUD_INIT)
    events = Event.select().where(Event.server == server.id).count()
    assert create_server(server.id) == "skipped"
    assert Event.select().where(Event.server == server.id).count() == events
    assert len(stack.provider_servers()) == 1
    # Enqueueing the same step again is a no-op too (deterministic unique job id).
    start_provisioning(stack.redis, stack.settings, Server.get_by_id(server.id))
    stack.drain(lambda: True)
    assert len(stack.provider_servers()) == 1


def test_a_lost_create_response_is_adopted_not_duplicated(stack: Stack) -> None:
    server = deploy(stack)
    # Simulate a crash after Hetzner created the VPS but before we recorded it.
    stack.drain(lambda: stack.status(server.id) == Status.CLOUD_INIT)
    provider_id = Server.get_by_id(server.id).provider_id
    Server.update(status="creating", provider_id=None).where(Server.id == server.id).execute()
    assert create_server(server.id).startswith("adopted")
    assert Server.get_by_id(server.id).provider_id == provider_id
    assert stack.provider_servers() == [provider_id]


def test_transient_errors_retry_then_succeed(stack: Stack) -> None:
    stack.sim.set_faults({"errors": {"create_server": {"code": "unavailable", "count": 2}}})
    server = deploy(stack)
    row = stack.wait_status(server.id, Status.CLOUD_INIT)
    retries = [e.message for e in row.events if e.kind == "retry"]
    assert len(retries) == 2 and "unavailable" in retries[0]
    assert len(stack.provider_servers()) == 1


def test_429_bursts_are_ridden_out(stack: Stack) -> None:
    stack.sim.set_faults({"rate_limit_burst": 3})
    server = deploy(stack)
    stack.wait_status(server.id, Status.CLOUD_INIT)
    assert len(stack.provider_servers()) == 1


def test_rate_limit_waits_do_not_use_up_a_phase_s_retries(stack: Stack) -> None:
    # More 429s in a row than the phase has retries: creating and deprovisioning
    # both wait them out (the project's budget, not the server's trouble).
    limit = stack.settings.phase_retries
    stack.sim.set_faults({"rate_limit_burst": limit + 2})
    server = deploy(stack)
    row = stack.wait_status(server.id, Status.CLOUD_INIT, timeout=60)
    waits = [e.message for e in row.events if e.kind == "retry"]
    assert len(waits) == limit + 2 and all("rate limited" in w for w in waits)
    assert "(not counted; 0 of" in waits[-1]
    assert row.throttled == 0  # a new phase starts without any
    Server.update(status="ready").where(Server.id == server.id).execute()
    stack.sim.set_faults({"rate_limit_burst": limit + 2})
    operator.deprovision(stack.redis, server.id, "operator:test", reason="test")
    stack.wait_status(server.id, Status.DELETED, timeout=60)
    # The delete action runs for a moment (as on Hetzner), the server listed meanwhile.
    stack.drain(lambda: stack.provider_servers() == [], what="the VPS to be gone")


def test_a_permanent_error_fails_and_leaves_nothing(stack: Stack) -> None:
    stack.sim.set_faults({"errors": {"create_server": {"code": "resource_limit_exceeded"}}})
    server = deploy(stack)
    row = stack.wait_status(server.id, Status.FAILED)
    assert row.failed_phase == "creating" and "resource_limit_exceeded" in (row.last_error or "")
    assert stack.provider_servers() == []


def test_out_of_retries_fails(stack: Stack) -> None:
    stack.sim.set_faults({"errors": {"create_server": {"code": "server_error"}}})
    server = deploy(stack)
    row = stack.wait_status(server.id, Status.FAILED, timeout=60)
    assert "out of retries" in (row.last_error or "")
    assert sum(1 for e in row.events if e.kind == "retry") == stack.settings.phase_retries


def test_no_callback_fails_at_the_boot_deadline_and_cleans_up(stack: Stack) -> None:
    server = deploy(stack)  # the callback URL points nowhere: it never arrives
    stack.wait_status(server.id, Status.CLOUD_INIT)
    row = stack.wait_status(server.id, Status.FAILED, timeout=20)
    assert row.failed_phase == "cloud_init" and "no cloud-init callback" in (row.last_error or "")
    stack.drain(lambda: Server.get_by_id(server.id).provider_id is None, what="cleanup")
    # The delete action runs for a moment (as on Hetzner), the server listed meanwhile.
    stack.drain(lambda: stack.provider_servers() == [], what="the VPS to be gone")
    assert any(e.kind == "cleanup" for e in Server.get_by_id(server.id).events)


@pytest.mark.parametrize(
    "state", ["pending", "creating", "cloud_init", "injecting_secrets", "ready", "failed"]
)
def test_force_deprovision_from_any_state_leaves_no_vps(stack: Stack, state: str) -> None:
    server = deploy(stack)
    if state != "pending":
        stack.wait_status(server.id, Status.CLOUD_INIT)
    # Put the VPS-holding server in the state under test (the callback and the
    # injection are the end-to-end tests' business).
    if state in ("creating", "injecting_secrets", "ready"):
        Server.update(status=state).where(Server.id == server.id).execute()
    if state == "failed":
        Server.update(status="failed", failed_phase="cloud_init").where(
            Server.id == server.id
        ).execute()
    operator.deprovision(stack.redis, server.id, "operator:test", force=True)
    row = stack.wait_status(server.id, Status.DELETED)
    assert row.deleted_at is not None
    stack.drain(lambda: stack.provider_servers() == [], what="no VPS left")


def test_deprovision_without_force_refuses_in_flight(stack: Stack) -> None:
    server = deploy(stack)
    with pytest.raises(operator.OperatorError, match="--force"):
        operator.deprovision(stack.redis, server.id, "operator:test")


def test_retries_are_published_live(stack: Stack) -> None:
    pubsub = stack.redis.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel_for(stack.redis))
    stack.sim.set_faults({"errors": {"create_server": {"code": "unavailable", "count": 1}}})
    server = deploy(stack)
    stack.wait_status(server.id, Status.CLOUD_INIT)
    seen = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            seen.append(message["data"].decode())
    assert any('"type": "event"' in m and '"kind": "retry"' in m for m in seen), seen
    assert any('"to": "cloud_init"' in m for m in seen)
    pubsub.close()


def test_a_pointless_boot_deadline_check_is_dropped_before_it_runs(stack: Stack) -> None:
    # The injection job does this once the server is ready (jobs.injecting).
    row = stack.wait_status(deploy(stack).id, Status.CLOUD_INIT)
    jid = job_id(row.id, "boot-deadline", row.attempt)
    registry = ScheduledJobRegistry(FINISH, connection=stack.redis)
    assert jid in registry.get_job_ids()
    assert unschedule(stack.redis, FINISH, jid)
    assert jid not in registry.get_job_ids()
    assert not Job.exists(jid, connection=stack.redis)
    assert not unschedule(stack.redis, FINISH, jid)  # gone already: nothing to do


def test_a_failed_server_s_deadline_check_is_unscheduled(stack: Stack) -> None:
    # Issue 21: failed servers' checks stayed in the scheduled registry until they fired.
    registry = ScheduledJobRegistry(FINISH, connection=stack.redis)
    by_job = stack.wait_status(deploy(stack).id, Status.CLOUD_INIT)
    by_callback = stack.wait_status(deploy(stack).id, Status.CLOUD_INIT)
    jids = [job_id(row.id, "boot-deadline", row.attempt) for row in (by_job, by_callback)]
    assert set(jids) <= set(registry.get_job_ids())
    # A job's failure path (a phase out of retries, the reconciler, the deadline itself).
    assert fail(stack.ctx, by_job.id, Status.CLOUD_INIT, "cloud-init reported an error")
    assert jids[0] not in registry.get_job_ids()
    # The callback's failure path: the web app fails the row, then asks the work port.
    Server.update(status=Status.FAILED.value).where(Server.id == by_callback.id).execute()
    RQWork().after_failure(stack.redis, Server.get_by_id(by_callback.id))
    assert jids[1] not in registry.get_job_ids()
    assert not any(Job.exists(jid, connection=stack.redis) for jid in jids)
