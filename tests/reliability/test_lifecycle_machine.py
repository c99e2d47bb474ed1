"""A Hypothesis state machine over the whole lifecycle, invariants checked after every step.

Rules: deploy and duplicate deploy webhooks; valid, replayed and forged
cloud-init callbacks; running the queued jobs; a worker crash at any point
(a job dropped before it ran, a job run twice, a worker dying right after
Hetzner created the VPS); operator retry and forced deprovision;
subscription lapse (with the grace enforcer) and reactivation; the sweeper
and the reconciler. Everything is real: the database, Redis, RQ
(SimpleWorker bursts), the simulator and SSH injection; the VPSs do not call
back on their own (`no_callback`), the machine does.

After every step: timelines complete, rows consistent, one live server per
customer, never two VPSs for one server. At the end of each example, once
everything has settled: every deploy is ready, failed with a reason, or
deleted; no VPS without a live row; no planted secret anywhere.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import peewee
import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from rq import Queue
from rq.job import Job

from core.domain.callbacks import CallbackRejected, accept_callback
from core.domain.deploys import DeployRefused
from core.domain.install_outcome import InstallOutcome
from core.domain.lifecycle import IN_FLIGHT, Status
from core.domain.subscriptions import record_change
from core.store.models import MODELS, Server
from jobs import grace, operator, reconcile, sweeper
from jobs.context import use_context
from jobs.enqueue import after_callback
from jobs.queues import WORKER_QUEUES
from sim.server import SimulatorServer
from tests import factories
from tests.leaks import search_everything
from tests.pipeline.harness import Stack, build_stack
from tests.reliability.invariants import (
    provider_problems,
    row_problems,
    sim_servers,
    timeline_problems,
)

CUSTOMERS = 3
customers = st.integers(min_value=0, max_value=CUSTOMERS - 1)


class Crash(BaseException):
    """The worker process died (not an error a job could catch)."""


def make_machine(stack: Stack) -> type[RuleBasedStateMachine]:
    """The machine class, bound to one stack (fresh state per example)."""

    class Lifecycle(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            for model in reversed(MODELS[:-1]):  # keep the schema version
                model.delete().execute()
            stack.redis.flushdb()
            stack.sim.reset()
            stack.sim.wait_until(lambda: not sim_servers(stack.sim))
            stack.sim.set_faults({"no_callback": 1.0})
            self.owners = [factories.paying_customer(stack.ring) for _ in range(CUSTOMERS)]
            self.planted = [
                s for o in self.owners for s in factories.planted_secrets(o, stack.ring)
            ]
            self.used_tokens: list[tuple[int, str]] = []

        # -- helpers -------------------------------------------------------------

        def server(self, n: int) -> Server | None:
            found: Server | None = (
                Server.select()
                .where(Server.customer == self.owners[n])
                .order_by(Server.id.desc())
                .first()
            )
            return found

        def token(self, server: Server) -> str:
            return stack.ring.derive_token(f"callback/{server.id}/{server.attempt}")

        def jobs(self) -> list[Job]:
            return [j for name in WORKER_QUEUES for j in Queue(name, connection=stack.redis).jobs]

        # -- rules ---------------------------------------------------------------

        @initialize()
        def deploy_everyone(self) -> None:
            """Every example starts with each customer's deploy accepted and queued."""
            for owner in self.owners:
                operator.deploy(stack.redis, stack.settings, owner.external_id, "webhook")

        @rule(n=customers, again=st.booleans())
        def deploy(self, n: int, again: bool) -> None:
            """A deploy webhook (again: the dashboard retried it)."""
            before = self.server(n)
            try:
                for _ in range(2 if again else 1):
                    operator.deploy(
                        stack.redis, stack.settings, self.owners[n].external_id, "webhook"
                    )
            except DeployRefused:
                return
            after = self.server(n)
            assert after is not None
            if before is not None and before.status != Status.DELETED:
                assert after.id == before.id, "a second live server for one customer"

        @rule()
        def run_jobs(self) -> None:
            stack.worker().work(burst=True, with_scheduler=True, logging_level="ERROR")

        @rule(index=st.integers(0, 5))
        def drop_job(self, index: int) -> None:
            """A worker died holding a job: it never runs (the sweeper must notice)."""
            jobs = self.jobs()
            if jobs:
                job = jobs[index % len(jobs)]
                Queue(job.origin, connection=stack.redis).remove(job)
                job.delete()

        @rule(index=st.integers(0, 5))
        def run_job_twice(self, index: int) -> None:
            """RQ is at-least-once: a job runs, then runs again."""
            jobs = self.jobs()
            if jobs:
                job = jobs[index % len(jobs)]
                Queue(job.origin, connection=stack.redis).remove(job)
                for _ in range(2):
                    job.func(*job.args, **job.kwargs)
                job.delete()

        @rule()
        def crash_after_create(self) -> None:
            """The worker dies right after Hetzner accepted the create request."""
            creates = [j for j in self.jobs() if j.func_name == "jobs.creating.create_server"]
            if not creates:
                return
            job = creates[0]
            hetzner = stack.ctx.hetzner
            original: Callable[..., Any] = hetzner.create_server

            def create_then_die(*args: Any, **kwargs: Any) -> Any:
                original(*args, **kwargs)
                raise Crash

            Queue(job.origin, connection=stack.redis).remove(job)
            hetzner.create_server = create_then_die  # type: ignore[method-assign]
            try:
                with contextlib.suppress(Crash):
                    job.func(*job.args)
            finally:
                del hetzner.create_server
            job.delete()

        @rule(n=customers)
        def callback_valid(self, n: int) -> None:
            server = self.server(n)
            if server is None or server.status != Status.CLOUD_INIT:
                return
            machine = stack.sim.vps(server.provider_id or 0)
            if machine is None:
                return
            token = self.token(server)
            accept_callback(
                server.id, token, machine.host_public_key, server.ipv4, install=_good(server)
            )
            after_callback(stack.redis, Server.get_by_id(server.id))
            self.used_tokens.append((server.id, token))

        @rule(forged=st.booleans())
        def callback_replayed_or_forged(self, forged: bool) -> None:
            if not self.used_tokens and not forged:
                return
            server_id, token = self.used_tokens[-1] if self.used_tokens else (1, "")
            if forged:
                token = "forged-" + token[::-1]
            before = Server.get_or_none(Server.id == server_id)
            with pytest.raises(CallbackRejected):
                accept_callback(
                    server_id,
                    token,
                    "ssh-ed25519 AAAA",
                    "127.0.0.1",
                    install=InstallOutcome(ok=True),
                )
            after = Server.get_or_none(Server.id == server_id)
            assert (before and before.__data__) == (after and after.__data__)

        @rule(n=customers)
        def retry(self, n: int) -> None:
            server = self.server(n)
            if server is not None:
                with contextlib.suppress(operator.OperatorError):
                    operator.retry(stack.redis, stack.settings, server.id, "operator:test")

        @rule(n=customers)
        def force_deprovision(self, n: int) -> None:
            server = self.server(n)
            if server is not None:
                with contextlib.suppress(operator.OperatorError):
                    operator.deprovision(stack.redis, server.id, "operator:test", force=True)

        @rule(n=customers, active=st.booleans())
        def subscription(self, n: int, active: bool) -> None:
            """Lapse (then the grace enforcer, grace is 1 s) or reactivation."""
            status = "active" if active else "canceled"
            record_change(self.owners[n].external_id, status, datetime.now(UTC), stack.settings)

        @rule()
        def enforce_grace(self) -> None:
            grace.run(stack.ctx)

        @rule()
        def sweep(self) -> None:
            sweeper.run(stack.ctx)

        @rule()
        def reconcile(self) -> None:
            reconcile.run(stack.ctx, apply=True)

        # -- invariants ----------------------------------------------------------

        @invariant()
        def consistent(self) -> None:
            assert not timeline_problems()
            assert not row_problems()
            assert not provider_problems(sim_servers(stack.sim), settled=False)

        def teardown(self) -> None:
            settle(stack)
            unfinished = [
                (s.id, s.status)
                for s in Server.select()
                if s.status not in (Status.READY, Status.FAILED, Status.DELETED)
            ]
            assert not unfinished, f"deploys that never ended: {unfinished}"
            assert not provider_problems(sim_servers(stack.sim), settled=True)
            assert not timeline_problems()
            search = search_everything(self.planted, client=stack.redis)
            search.check()

    return Lifecycle


def _good(server: Server) -> InstallOutcome:
    """What a VPS that installed the server's commit reports."""
    return InstallOutcome(ok=True, cloud_init_status="running", commit=server.rachel8_commit)


def settle(stack: Stack, rounds: int = 40) -> None:
    """Let the system finish: callbacks the VPSs would make, jobs, the sweeper, the reconciler."""
    for _ in range(rounds):
        for server in Server.select().where(Server.status == Status.CLOUD_INIT):
            machine = stack.sim.vps(server.provider_id or 0)
            token = stack.ring.derive_token(f"callback/{server.id}/{server.attempt}")
            if machine is not None:
                with contextlib.suppress(CallbackRejected):
                    accept_callback(
                        server.id,
                        token,
                        machine.host_public_key,
                        server.ipv4,
                        install=_good(server),
                    )
                    after_callback(stack.redis, Server.get_by_id(server.id))
        stack.worker().work(burst=True, with_scheduler=True, logging_level="ERROR")
        sweeper.run(stack.ctx)
        reconcile.run(stack.ctx, apply=True)
        stack.worker().work(burst=True, with_scheduler=True, logging_level="ERROR")
        busy = Server.select().where(
            Server.status.in_([*(s.value for s in IN_FLIGHT), Status.DEPROVISIONING.value])
        )
        if not busy.exists() and not provider_problems(sim_servers(stack.sim), settled=True):
            return
        time.sleep(0.2)


def test_lifecycle_state_machine(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    sim: SimulatorServer,
) -> None:
    stack = build_stack(
        tmp_path,
        redis_client,
        sim,
        RACHEL_BOOT_TIMEOUT="2s",
        RACHEL_GRACE_PERIOD="1s",
        RACHEL_SWEEP_GRACE="0s",
        RACHEL_ORPHAN_MIN_AGE="0s",
        RACHEL_PHASE_RETRIES="2",
    )
    try:
        run_state_machine_as_test(
            make_machine(stack),
            settings=settings(
                max_examples=12,
                stateful_step_count=20,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        use_context(None)
