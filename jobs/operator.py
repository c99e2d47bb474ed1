"""Operator operations, shared by the CLI and the TUI: deploy, retry, deprovision, re-inject.

Each checks the server's state, makes its change as an audited transition
(the actor is `operator:NAME`), then queues the work. Refusals raise
`OperatorError` with a message fit for a terminal or a notification.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis
from rq.command import send_stop_job_command
from rq.job import JobStatus

from core.domain.customers import missing_message, missing_values
from core.domain.deploys import request_deploy
from core.domain.events import redis_publisher
from core.domain.lifecycle import IN_FLIGHT, Status, retry_target, transition
from core.errors import RachelError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.platform.settings import Settings
from core.store.db import connection, current
from core.store.models import Customer, Server
from jobs.enqueue import enqueue_injection, start_deprovision, start_provisioning
from jobs.queues import fetch, job_id

log = logging.getLogger(__name__)


class OperatorError(RachelError):
    """An operator action that cannot be done in the server's current state."""

    code = "operator_refused"


@dataclass(frozen=True)
class Outcome:
    """What an operator action did, for the CLI's output and the TUI's notification."""

    server_id: int
    message: str


def _server(server_id: int) -> Server:
    server = Server.get_or_none(Server.id == server_id)
    if server is None:
        raise OperatorError(f"server {server_id} does not exist")
    return server


def _require_rachel8_values(customer: Customer) -> None:
    """Refuse work that could only end at the injection: Rachel8 needs a value never given.

    A customer from before the deploy webhook asked for the owner's Telegram
    id has none; building them a server would cost money and fail.
    """
    missing = missing_values(customer)
    if missing:
        raise OperatorError(missing_message(customer, missing))


def deploy(
    conn: redis.Redis, settings: Settings, external_id: str, actor: str, clock: Clock = SYSTEM_CLOCK
) -> Outcome:
    """Deploy a server for an existing customer (the CLI's `deploy CUSTOMER`)."""
    with connection():
        customer = Customer.get_or_none(Customer.external_id == external_id)
        if customer is None:
            raise OperatorError(f"no customer with id {external_id!r}")
        _require_rachel8_values(customer)
        result = request_deploy(customer, settings, actor=actor, clock=clock)
        if result.created or (result.server.status == Status.PENDING and not result.server.job_id):
            start_provisioning(conn, settings, result.server)
            return Outcome(
                result.server.id, f"server {result.server.id} deploying ({result.server.name})"
            )
        return Outcome(
            result.server.id,
            f"customer already has server {result.server.id} ({result.server.status})",
        )


def retry(
    conn: redis.Redis, settings: Settings, server_id: int, actor: str, clock: Clock = SYSTEM_CLOCK
) -> Outcome:
    """Restart a failed server from the phase that failed."""
    with connection():
        server = _server(server_id)
        if server.status != Status.FAILED:
            raise OperatorError(
                f"server {server_id} is {server.status}; only failed servers can be retried"
            )
        _require_rachel8_values(server.customer)
        if server.provider_id is not None and server.failed_phase != Status.INJECTING_SECRETS:
            raise OperatorError(
                f"server {server_id}: cleanup of Hetzner server "
                f"{server.provider_id} has not finished; retry in a moment"
            )
        target = retry_target(server.failed_phase)
        if target == Status.INJECTING_SECRETS and server.provider_id is None:
            # Cleanup already deleted the VPS the injection needs (and cleared its
            # address and pinned key): injecting again could only fail at once
            # ("no address or pinned host key"), so start over with a new VPS.
            # Found by tests/reliability/test_bad_secrets.py.
            target = Status.CREATING
        changes: dict[str, object] = {"retries": 0, "last_error": None}
        if target == Status.CREATING:
            changes.update(attempt=server.attempt + 1, create_requested_at=None, host_key=None)
        moved = transition(
            server_id,
            Status.FAILED,
            target,
            actor=actor,
            message=f"retry requested (failed in {server.failed_phase})",
            changes=changes,
            clock=clock,
            publish=redis_publisher(conn),
        )
        if not moved:
            raise OperatorError(f"server {server_id} changed meanwhile; look again")
        server = _server(server_id)
        if target == Status.INJECTING_SECRETS:
            enqueue_injection(conn, server)
        else:
            start_provisioning(conn, settings, server)
        return Outcome(server_id, f"server {server_id} retrying from {target}")


def reinject(conn: redis.Redis, server_id: int, actor: str, clock: Clock = SYSTEM_CLOCK) -> Outcome:
    """Write the customer's current secrets to a ready server again."""
    with connection():
        server = _server(server_id)
        if server.status != Status.READY:
            raise OperatorError(
                f"server {server_id} is {server.status}; secrets can be "
                "re-injected into ready servers only"
            )
        _require_rachel8_values(server.customer)
        if server.update_claim is not None:
            raise OperatorError(_updating_message(server))
        with current().atomic():
            # Lock the row while it is unclaimed (a row lock on PostgreSQL, the
            # write lock on SQLite): an update's claim, which needs a ready
            # server, waits for this transaction and then finds it injecting.
            if not _hold_unclaimed(server_id, clock):
                raise OperatorError(_updating_message(_server(server_id)))
            moved = transition(
                server_id,
                Status.READY,
                Status.INJECTING_SECRETS,
                actor=actor,
                message="re-injecting secrets",
                changes={"retries": 0},
                clock=clock,
                publish=redis_publisher(conn),
            )
        if not moved:
            raise OperatorError(f"server {server_id} changed meanwhile; look again")
        enqueue_injection(conn, _server(server_id))
        return Outcome(server_id, f"server {server_id} re-injecting secrets")


def _hold_unclaimed(server_id: int, clock: Clock) -> bool:
    """Touch a ready, unclaimed server's row in the caller's transaction (locking it)."""
    touched = (
        Server.update(updated_at=clock.now())
        .where(
            (Server.id == server_id)
            & (Server.status == Status.READY)
            & Server.update_claim.is_null()
        )
        .execute()
    )
    return bool(touched)


def _updating_message(server: Server) -> str:
    if server.update_claim is None:
        return f"server {server.id} changed meanwhile; look again"
    return (
        f"server {server.id} is held by a rollout (target {server.update_claim}): updating, "
        "or watched after its update until the rollout ends; re-inject then, or abort the "
        "rollout (`rachel-cloud rollout status`)"
    )


def cancel_jobs(conn: redis.Redis, server: Server) -> list[str]:
    """Cancel the server's queued or scheduled jobs; stop one that is running."""
    candidates = {server.job_id} if server.job_id else set()
    candidates.add(job_id(server.id, "boot-deadline", server.attempt))
    cancelled = []
    for jid in candidates:
        job = fetch(conn, jid) if jid else None
        if job is None:
            continue
        status = job.get_status(refresh=True)
        if status == JobStatus.STARTED:
            try:
                send_stop_job_command(conn, job.id)
                cancelled.append(job.id)
            except Exception as exc:  # rq raises InvalidJobOperation when it just finished
                log.info("server %s: could not stop job %s: %s", server.id, job.id, exc)
        elif status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
            job.cancel()
            cancelled.append(job.id)
    return cancelled


def deprovision(
    conn: redis.Redis,
    server_id: int,
    actor: str,
    *,
    force: bool = False,
    reason: str = "deprovision requested",
    clock: Clock = SYSTEM_CLOCK,
) -> Outcome:
    """Deprovision a ready or failed server; with `force`, a server in any state."""
    publish = redis_publisher(conn)
    with connection():
        server = _server(server_id)
        status = Status(server.status)
        if status == Status.DELETED:
            raise OperatorError(f"server {server_id} is already deleted")
        if status == Status.DEPROVISIONING:
            start_deprovision(conn, server)
            return Outcome(
                server_id,
                f"server {server_id} is already deprovisioning; its deletion was queued again",
            )
        if status in IN_FLIGHT:
            if not force:
                raise OperatorError(
                    f"server {server_id} is {status}; use --force to stop "
                    "provisioning and deprovision it"
                )
            stopped = cancel_jobs(conn, server)
            if not transition(
                server_id,
                status,
                Status.FAILED,
                actor=actor,
                message=f"provisioning stopped for a forced deprovision"
                f"{' (cancelled ' + ', '.join(stopped) + ')' if stopped else ''}",
                changes={
                    "failed_phase": status.value,
                    "deadline_at": None,
                    "last_error": "stopped by a forced deprovision",
                },
                clock=clock,
                publish=publish,
            ):
                raise OperatorError(f"server {server_id} changed meanwhile; look again")
            status = Status.FAILED
        if not transition(
            server_id,
            status,
            Status.DEPROVISIONING,
            actor=actor,
            message=reason,
            changes={"retries": 0},
            clock=clock,
            publish=publish,
        ):
            raise OperatorError(f"server {server_id} changed meanwhile; look again")
        start_deprovision(conn, _server(server_id))
        return Outcome(server_id, f"server {server_id} deprovisioning")
