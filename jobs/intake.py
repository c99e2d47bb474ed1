"""The intake job: carry out the deploys the webhook stored (see `core.domain.intake`).

It clears the "intake queued" flag before it reads, so every deploy stored
before that moment is its to carry out and every deploy stored after it
queues a job of its own. It claims deploys oldest first, a batch per
transaction, carries them out (`core.domain.carry_out`), commits, and only
then queues the new servers' creating phase (and re-injections), so a job
never runs for a row another transaction cannot see yet.
"""

from __future__ import annotations

import logging

import redis

from core.domain import intake
from core.domain.carry_out import carry_out
from core.domain.events import redis_publisher
from core.domain.lifecycle import Status, transition
from core.store.db import connection, current, write_transaction
from core.store.models import Server
from jobs.context import JobContext, context
from jobs.enqueue import INTAKE_FLAG, after_callback, request_intake, start_provisioning
from jobs.queues import record_jobs

log = logging.getLogger(__name__)

#: Deploys per transaction: large enough to amortise the commit, small enough
#: that a SQLite write lock is held for well under a second.
BATCH = 25


def carry_out_deploys(limit: int = 10_000) -> int:
    """RQ job: carry out the stored deploys, oldest first; how many were handled.

    Args:
        limit: stop after about this many (the next job continues).
    """
    ctx = context()
    ctx.redis.delete(INTAKE_FLAG)
    handled = 0
    with connection():
        while handled < limit:
            outcomes = _batch(ctx, min(BATCH, limit - handled))
            if not outcomes:
                break
            handled += len(outcomes)
            _follow_up(ctx, outcomes)
    if handled >= limit:
        request_intake(ctx.redis)  # more may wait: the next job goes on with them
    if handled:
        log.info("intake: %d deploy(s) carried out", handled)
    return handled


def _batch(ctx: JobContext, size: int) -> list[intake.Outcome]:
    with write_transaction(current()):
        claimed = intake.claim(size)
        outcomes = carry_out(claimed, ctx.keyring, ctx.settings, clock=ctx.clock)
    for delivery, outcome in zip(claimed, outcomes, strict=True):
        _log(outcome, delivery.customer_external_id)
    return outcomes


def _log(outcome: intake.Outcome, customer_id: str | None) -> None:
    wid = outcome.webhook_id
    if outcome.state == intake.DONE:
        what = "created" if outcome.created else "already had"
        log.debug(
            "deploy %s: customer %s %s server %s",
            wid,
            customer_id,
            what,
            outcome.server_id,
            extra={"server_id": outcome.server_id, "phase": "pending"},
        )
    elif outcome.state == intake.REFUSED:
        log.warning(
            "deploy %s for customer %s refused (%s): %s; nothing was created",
            wid,
            customer_id,
            outcome.code,
            outcome.message,
        )
    else:
        log.error(
            "deploy %s for customer %s failed (%s): %s; it will not be retried, "
            "the sender must deliver it again under a new webhook-id",
            wid,
            customer_id,
            outcome.code,
            outcome.message,
        )


def _follow_up(ctx: JobContext, outcomes: list[intake.Outcome]) -> None:
    # After commit. Enqueue failures are left to the sweeper, which re-queues
    # pending servers without a job and ready servers' lost re-injections.
    queued: list[tuple[int, str]] = []
    try:
        for outcome in outcomes:
            if outcome.server_id is None:
                continue
            try:
                if outcome.created:
                    server = outcome.server or Server.get_by_id(outcome.server_id)
                    # New: pending, no job yet; the batch's job ids are recorded below.
                    jid = start_provisioning(ctx.redis, ctx.settings, server, record=False)
                    queued.append((server.id, jid))
                elif outcome.reinject:
                    _reinject(ctx, outcome.server_id)
            except redis.RedisError as exc:
                log.warning(
                    "server %s: could not queue its next phase (%s); the sweeper will",
                    outcome.server_id,
                    exc,
                    extra={"server_id": outcome.server_id},
                )
    finally:
        record_jobs(queued)  # also when a later one failed: these are queued


def _reinject(ctx: JobContext, server_id: int) -> None:
    moved = transition(
        server_id,
        Status.READY,
        Status.INJECTING_SECRETS,
        actor="webhook",
        message="the customer's credentials changed; re-injecting them",
        changes={"retries": 0},
        clock=ctx.clock,
        publish=redis_publisher(ctx.redis),
    )
    if moved:  # else it left ready meanwhile; its next injection reads the new secrets anyway
        after_callback(ctx.redis, Server.get_by_id(server_id), settings=ctx.settings)
