"""The public enqueue helpers: how the webhook app, the CLI and the TUI start work.

Each takes a Redis connection and a server id, and is safe to call twice.
Call them after the database change that made the work due has committed.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from datetime import datetime

import redis
from rq import Retry
from rq.rate_limit import RateLimit

from core.platform.settings import Settings
from core.store.models import Server
from jobs.queues import (
    CRASH_RETRIES,
    CRASH_RETRY_INTERVALS,
    DEPROVISION,
    FAILURE_TTL,
    FINISH,
    JOB_TIMEOUT,
    START,
    enqueue_step,
    job_id,
    queue,
    unschedule,
)
from jobs.registry import JobFunction

log = logging.getLogger(__name__)

#: Set while an intake job is queued and has not started: deploys stored
#: meanwhile need no job of their own. Expires, so a lost job heals by itself.
INTAKE_FLAG = "rachel-cloud:intake:queued"
INTAKE_FLAG_SECONDS = 30
#: Set while a pool refill asked for by a claim waits to start (a burst queues one).
POOL_REFILL_FLAG = "rachel-cloud:pool:refill-queued"
POOL_REFILL_FLAG_SECONDS = 5
#: Set while a rollout's tick is queued and has not started (`enqueue_rollout_tick`).
ROLLOUT_TICK_FLAG = "rachel-cloud:rollout:{}:tick-queued"
ROLLOUT_TICK_FLAG_SECONDS = 30
#: The step name in injection job ids (`enqueue_injection`, `injection_job_id`).
INJECTION_STEP = "injecting_secrets"


def create_rate_limit(settings: Settings) -> RateLimit:
    """At most `create_concurrency` creations in flight per Hetzner project."""
    project = "sim" if settings.uses_simulator else "hcloud"
    return RateLimit(key=f"rachel-cloud:create:{project}", concurrency=settings.create_concurrency)


def start_provisioning(
    connection: redis.Redis, settings: Settings, server: Server, *, record: bool = True
) -> str:
    """Queue the creating phase of a pending (or retried) server.

    Args:
        record: store the job id on the server row now (False: the caller
            records a batch's with `jobs.queues.record_jobs`).
    """
    return enqueue_step(
        connection,
        START,
        JobFunction.CREATE_SERVER,
        server.id,
        "creating",
        attempt=server.attempt,
        entry=server.status_changed_at,
        retry=server.retries,
        rate_limit=create_rate_limit(settings),
        record=record,
    )


@functools.lru_cache(maxsize=1)
def callback_dispatch() -> str:
    """This process's RACHEL_CALLBACK_DISPATCH (`enqueue` or `poll`), read once."""
    return Settings.load().callback_dispatch


def after_callback(
    connection: redis.Redis,
    server: Server,
    *,
    settings: Settings | None = None,
    record: bool = True,
) -> str | None:
    """Queue secret injection once cloud-init has called back.

    With RACHEL_CALLBACK_DISPATCH=poll (the benchmarks' baseline) nothing is
    queued here: `jobs.callback_poll` finds the server on its next pass.

    Args:
        record: store the job id on the server row (False: the transition
            into injecting_secrets already did, see `injection_job_id`).

    Returns:
        The job id, or None when the poller will queue it.
    """
    if _dispatch(settings) == "poll":
        return None
    return enqueue_injection(connection, server, record=record)


def injection_job_id(
    server: Server, entry: datetime, *, settings: Settings | None = None
) -> str | None:
    """The id `after_callback` will queue a server's injection under once it
    enters injecting_secrets at `entry` (with its retries reset to 0); None in
    poll mode, where it queues none (a recorded id would tell the poller the
    injection is queued)."""
    if _dispatch(settings) == "poll":
        return None
    return job_id(server.id, INJECTION_STEP, server.attempt, 0, entry)


def _dispatch(settings: Settings | None) -> str:
    return settings.callback_dispatch if settings is not None else callback_dispatch()


def enqueue_injection(connection: redis.Redis, server: Server, *, record: bool = True) -> str:
    """Queue secret injection of a server in injecting_secrets (idempotent)."""
    return enqueue_step(
        connection,
        FINISH,
        JobFunction.INJECT_SECRETS,
        server.id,
        INJECTION_STEP,
        attempt=server.attempt,
        entry=server.status_changed_at,
        retry=server.retries,
        record=record,
    )


def drop_boot_deadline(connection: redis.Redis, server: Server) -> bool:
    """Unschedule the boot-deadline check of the server's attempt: it left cloud_init.

    Best effort: a check left in place runs and finds nothing to do; dropping it
    spares a worker the job and keeps the scheduled registry to what is due.

    Returns:
        True when the check was still scheduled and is now gone.
    """
    try:
        return unschedule(connection, FINISH, job_id(server.id, "boot-deadline", server.attempt))
    except redis.RedisError as exc:
        log.debug("server %s: boot deadline check left scheduled: %s", server.id, exc)
        return False


def enqueue_cleanup(
    connection: redis.Redis, server: Server, *, retry: int = 0, delay: float = 0.0
) -> str:
    """Queue the cleanup of a failed server (idempotent for its failure and retry).

    The first one also drops the server's boot-deadline check (a failed
    server's deadline can never fire), whichever path failed it: a job, the
    callback (through the work port), the reconciler.

    Args:
        retry: the cleanup's own retry number (0: the first try).
        delay: seconds to wait first (0: now).
    """
    if not retry:
        drop_boot_deadline(connection, server)
    return enqueue_step(
        connection,
        FINISH,
        JobFunction.CLEANUP,
        server.id,
        "cleanup",
        attempt=server.attempt,
        entry=server.status_changed_at,
        retry=retry,
        delay=delay,
        record=False,
        extra_args=(retry,) if retry else (),
    )


def start_deprovision(connection: redis.Redis, server: Server) -> str:
    """Queue the deletion of a server that is in deprovisioning."""
    return enqueue_step(
        connection,
        DEPROVISION,
        JobFunction.DEPROVISION,
        server.id,
        "deprovisioning",
        attempt=server.attempt,
        entry=server.status_changed_at,
        retry=server.retries,
    )


def request_intake(connection: redis.Redis) -> str | None:
    """Make sure an intake job will look at the deploys stored so far.

    One job serves every deploy stored before it starts (it clears the flag
    first, then reads), so a burst of webhooks queues a handful of jobs, not
    one per deploy. Call after the deploys committed.

    Returns:
        The id of the job queued, or None when one was already waiting.
    """
    if not connection.set(INTAKE_FLAG, "1", nx=True, ex=INTAKE_FLAG_SECONDS):
        return None
    jid = f"intake-{time.time_ns()}"
    try:
        queue(connection, START).enqueue(
            JobFunction.CARRY_OUT_DEPLOYS.path,
            job_id=jid,
            retry=Retry(max=CRASH_RETRIES, interval=CRASH_RETRY_INTERVALS),
            result_ttl=60,
            failure_ttl=FAILURE_TTL,
            job_timeout=JOB_TIMEOUT,
            description="deploy intake",
            at_front=True,
        )
    except BaseException:
        with contextlib.suppress(redis.RedisError):
            connection.delete(INTAKE_FLAG)  # the next deploy (or the sweeper) tries again
        raise
    return jid


def request_refill(connection: redis.Redis) -> str | None:
    """Queue a pool refill soon (`jobs.pool.refill_pool`): a claim took a server.

    Claims made before the queued job starts share it (it clears the flag
    first, then reads the pool, as `enqueue_rollout_tick`'s do); the flag
    expires after POOL_REFILL_FLAG_SECONDS should the job be lost, and the
    cron task refills anyway, so a lost request costs one RACHEL_POOL_INTERVAL.

    Returns:
        The id of the job queued, or None when one was queued moments ago.
    """
    if not connection.set(POOL_REFILL_FLAG, "1", nx=True, ex=POOL_REFILL_FLAG_SECONDS):
        return None
    jid = f"pool-refill-{time.time_ns()}"
    queue(connection, FINISH).enqueue(
        JobFunction.REFILL_POOL.path,
        job_id=jid,
        result_ttl=60,
        failure_ttl=FAILURE_TTL,
        job_timeout=JOB_TIMEOUT,
        description="warm pool refill (after a claim)",
    )
    return jid


def enqueue_rollout_tick(connection: redis.Redis, rollout_id: int) -> str | None:
    """Make sure the rollout driver (`jobs.rollout.advance_rollout`) looks at the rollout soon.

    Call after the change that calls for it committed (an operator's action, a
    target finished). One queued tick serves every call made before it starts
    (it clears the flag first, then reads), as `request_intake` does; the cron
    task ticks every rollout with work left anyway, so a lost tick costs seconds.

    Returns:
        The id of the job queued, or None when one was already waiting.
    """
    flag = ROLLOUT_TICK_FLAG.format(rollout_id)
    if not connection.set(flag, "1", nx=True, ex=ROLLOUT_TICK_FLAG_SECONDS):
        return None
    jid = f"rollout{rollout_id}-tick-{time.time_ns()}"
    try:
        queue(connection, FINISH).enqueue(
            JobFunction.ADVANCE_ROLLOUT.path,
            rollout_id,
            job_id=jid,
            result_ttl=60,
            failure_ttl=FAILURE_TTL,
            job_timeout=JOB_TIMEOUT,
            description=f"rollout {rollout_id}: tick",
            meta={"rollout_id": rollout_id},
        )
    except BaseException:
        with contextlib.suppress(redis.RedisError):
            connection.delete(flag)
        raise
    return jid
