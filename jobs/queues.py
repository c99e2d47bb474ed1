"""Queues, job ids and idempotent enqueueing.

Four queues, in the order workers serve them: work that finishes servers
already under way comes before work that starts new ones, so a burst of
deploys does not starve the servers that have already booted; updates of
running servers (a rollout, `jobs.update`) come last, so a rollout never
starves provisioning.

Job ids are deterministic (`srv<id>-<phase>-a<attempt>-r<retry>`) and enqueued
with `unique=True`: enqueueing the same step twice (a webhook retried, a
sweeper racing a worker) queues it once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee
import redis
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job
from rq.rate_limit import RateLimit

from core.store.models import Server
from jobs.registry import JobFunction
from jobs.rq_internals import delete_if_scheduled

log = logging.getLogger(__name__)

FINISH = "rc-finish"  # inject secrets, finalize, boot deadlines, cleanup
DEPROVISION = "rc-deprovision"
START = "rc-start"  # server creation (rate limited per Hetzner project)
UPDATE = "rc-update"  # Rachel8 updates and rollbacks of ready servers (rollouts)
WORKER_QUEUES = (FINISH, DEPROVISION, START, UPDATE)

#: How long finished job records stay in Redis (the TUI's jobs view reads them).
RESULT_TTL = 3600
FAILURE_TTL = 7 * 86400
JOB_TIMEOUT = 300
CRASH_RETRIES = 3
CRASH_RETRY_INTERVALS = [1, 5, 30]


def job_id(
    server_id: int, step: str, attempt: int = 0, retry: int = 0, entry: datetime | None = None
) -> str:
    """The deterministic id of one step of one server.

    `entry` is when the server entered the phase the step belongs to: a server
    that enters the same phase again (re-injection, a retry) gets new ids,
    while every enqueue for the same entry and retry gets the same one.
    """
    stamp = f"-e{int(entry.replace(tzinfo=UTC).timestamp() * 1000)}" if entry else ""
    return f"srv{server_id}-{step}-a{attempt}{stamp}-r{retry}"


def queue(connection: redis.Redis, name: str) -> Queue:
    return Queue(name, connection=connection)


def enqueue_step(
    connection: redis.Redis,
    queue_name: str,
    func: JobFunction,
    server_id: int,
    step: str,
    *,
    attempt: int = 0,
    retry: int = 0,
    delay: float = 0.0,
    rate_limit: RateLimit | None = None,
    record: bool = True,
    extra_args: tuple[Any, ...] = (),
    entry: datetime | None = None,
) -> str:
    """Enqueue `func(server_id, *extra_args)` once under its deterministic id.

    Args:
        connection: Redis.
        queue_name: one of the queues above.
        func: the job function (workers import it, callers need not).
        server_id: the only state a job receives; it re-reads the row.
        step: the phase or step name, part of the job id.
        attempt: the server's provisioning attempt.
        retry: the retry number within the phase.
        delay: seconds to wait (scheduled by RQ's scheduler), 0 for now.
        rate_limit: an RQ concurrency limit for this job.
        record: store the job id on the server row (sweeper, TUI).
        extra_args: further plain arguments (never secrets).
        entry: when the server entered the step's phase (part of the id).

    Returns:
        The job id (whether this call queued it or it was already there).
    """
    jid = job_id(server_id, step, attempt, retry, entry)
    q = queue(connection, queue_name)
    options: dict[str, Any] = {
        # Our jobs handle their own errors; RQ's retry is the net for crashes
        # (a killed work horse, a lost worker), which idempotent jobs survive.
        "retry": Retry(max=CRASH_RETRIES, interval=CRASH_RETRY_INTERVALS),
        "job_id": jid,
        "unique": True,
        "result_ttl": RESULT_TTL,
        "failure_ttl": FAILURE_TTL,
        "job_timeout": JOB_TIMEOUT,
        "description": f"server {server_id}: {step}",
        "meta": {"server_id": server_id, "step": step, "attempt": attempt, "retry": retry},
    }
    if rate_limit is not None:
        # RQ 3 refuses unique=True for rate-limited jobs; check the id instead.
        # Two racing enqueues could both pass, which the idempotent job absorbs.
        options["rate_limit"] = rate_limit
        options["unique"] = False
        if Job.exists(jid, connection=connection):
            log.debug("server %s: %s already queued as %s", server_id, step, jid)
            if record:
                Server.update(job_id=jid).where(Server.id == server_id).execute()
            return jid
    try:
        if delay > 0:
            q.enqueue_in(timedelta(seconds=delay), func.path, server_id, *extra_args, **options)
        else:
            q.enqueue(func.path, server_id, *extra_args, **options)
    except DuplicateJobError:
        log.debug("server %s: %s already queued as %s", server_id, step, jid)
    if record:
        Server.update(job_id=jid).where(Server.id == server_id).execute()
    return jid


def record_jobs(queued: list[tuple[int, str]]) -> None:
    """Store the first job id of new servers (pairs of server id and job id), in one statement.

    Only where none is recorded yet: a job that already ran and queued its
    retry (which records its own id) is not overwritten with its predecessor's.
    """
    if not queued:
        return
    Server.update(job_id=peewee.Case(Server.id, queued)).where(
        Server.id.in_([server_id for server_id, _ in queued]) & Server.job_id.is_null()
    ).execute()


def unschedule(connection: redis.Redis, queue_name: str, jid: str) -> bool:
    """Drop a delayed job that has become pointless before it runs (one round trip).

    Only while the job still waits to be scheduled: once RQ's scheduler has
    moved it to its queue, it runs (and finds nothing to do).

    Returns:
        True when the job was still scheduled and is now gone.
    """
    return delete_if_scheduled(connection, queue_name, jid)


def fetch(connection: redis.Redis, jid: str) -> Job | None:
    """The job with this id, or None when Redis no longer has it."""
    try:
        return Job.fetch(jid, connection=connection)
    except Exception:  # rq raises NoSuchJobError, or a decode error for a corrupt hash
        return None
