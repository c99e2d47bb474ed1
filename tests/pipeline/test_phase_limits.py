"""A phase past its limit fails by itself, rate-limited or not (issue 21, item 2).

Rate-limit waits do not use up a phase's retries, so before this the only
bound on a server held in `creating` by sustained 429s was the reconciler,
which by default only reports. These run with the reconciler nowhere in
sight and RACHEL_RECONCILE_APPLY off, against the simulator's 429 bursts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import peewee
import pytest
import redis

from core.domain.lifecycle import Status
from core.store.models import Event, Server
from jobs.context import use_context
from sim.server import SimulatorServer
from tests.pipeline.harness import Stack, build_stack
from tests.pipeline.test_phases import deploy

CREATING_LIMIT = 3.0
#: A job's own run time and the scheduler's whole-second ticks, beyond the limit.
SLACK = 2.5


@pytest.fixture
def stack(
    db: peewee.Database, tmp_path: Path, redis_client: redis.Redis, sim: SimulatorServer
) -> Iterator[Stack]:
    yield build_stack(
        tmp_path,
        redis_client,
        sim,
        RACHEL_PHASE_LIMITS=(
            f"pending=15m,creating={CREATING_LIMIT:.0f}s,injecting_secrets=15m,deprovisioning=30m"
        ),
        RACHEL_RECONCILE_APPLY="false",
    )
    use_context(None)


def creating_span(server_id: int) -> tuple[datetime, datetime | None]:
    """When the server entered creating, and when it left (None: still there)."""
    events = list(Event.select().where(Event.server == server_id).order_by(Event.id))
    entered = next(e.at for e in events if e.to_status == Status.CREATING)
    left = next((e.at for e in events if e.from_status == Status.CREATING), None)
    return entered, left


class Bursts:
    """Re-arm the simulator's 429 burst every `every` seconds, like a busy shared project."""

    def __init__(self, sim: SimulatorServer, requests: int, every: float) -> None:
        self.sim, self.requests, self.every = sim, requests, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="429-bursts", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sim.set_faults({"rate_limit_burst": self.requests})
            self._stop.wait(self.every)

    def __enter__(self) -> Bursts:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sim.set_faults({})


def test_sustained_429s_fail_a_server_at_its_creating_limit_and_clean_up(stack: Stack) -> None:
    assert stack.settings.reconcile_apply is False
    # Every create answered 429 after it was sent: a VPS may exist, so cleanup must look.
    stack.sim.set_faults({"errors": {"create_server": {"code": "rate_limit_exceeded"}}})
    server = deploy(stack)

    row = stack.wait_status(server.id, Status.FAILED, timeout=20)

    assert row.failed_phase == "creating"
    assert f"past the creating limit of {CREATING_LIMIT:.0f}s" in (row.last_error or "")
    assert "rate_limit_exceeded" in (row.last_error or "")
    entered, left = creating_span(server.id)
    assert left is not None and (left - entered).total_seconds() <= CREATING_LIMIT + SLACK
    # Its cleanup runs (its requests are not creates) and leaves nothing behind.
    stack.drain(
        lambda: (
            Event.select().where((Event.server == server.id) & (Event.kind == "cleanup")).exists()
        ),
        what="the cleanup",
    )
    assert stack.provider_servers() == []


def test_every_server_of_a_batch_under_429_bursts_ends_within_its_limit(stack: Stack) -> None:
    servers = [deploy(stack).id for _ in range(6)]
    started = time.monotonic()
    with Bursts(stack.sim, requests=10, every=0.5):
        # The bursts outlast the limit: before the fix, servers waited them out in creating.
        stack.drain(
            lambda: (
                all(stack.status(s) != Status.CREATING for s in servers)
                and all(creating_span(s)[1] is not None for s in servers)
            ),
            timeout=CREATING_LIMIT * 3,
            what="every server to leave creating while the bursts last",
        )
    assert time.monotonic() - started < CREATING_LIMIT * 3
    for server_id in servers:
        row = Server.get_by_id(server_id)
        entered, left = creating_span(server_id)
        assert left is not None
        assert (left - entered).total_seconds() <= CREATING_LIMIT + SLACK, server_id
        assert row.status in (Status.CLOUD_INIT, Status.FAILED), row.status
        if row.status == Status.FAILED:
            assert "past the creating limit" in (row.last_error or ""), row.last_error
    # Failed ones clean up once the bursts are over; nothing they started is left.
    stack.drain(
        lambda: all(
            Server.get_by_id(s).provider_id is None
            for s in servers
            if stack.status(s) == Status.FAILED
        ),
        what="the cleanups",
    )
    live = {Server.get_by_id(s).provider_id for s in servers} - {None}
    assert set(stack.provider_servers()) == live
