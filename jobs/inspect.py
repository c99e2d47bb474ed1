"""Read-only views of the job queues for operators (the TUI's jobs screen), and requeue.

Everything here is plain data (`QueueInfo`, `WorkerInfo`, `JobInfo`) so that
callers never touch RQ objects. Tracebacks and error text pass through
`core.redaction.redact` before they leave this module: a failed job's
traceback may quote a value that must never reach a screen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from rq import Worker
from rq.job import Job
from rq.registry import BaseRegistry

from core.errors import RachelError
from core.security.redaction import redact
from jobs.queues import WORKER_QUEUES, queue

log = logging.getLogger(__name__)

#: Most failed jobs listed per queue (newest first).
FAILED_LIMIT = 200


class JobNotFound(RachelError):
    """The job asked for is not (or no longer) in Redis."""

    code = "job_not_found"


@dataclass(frozen=True)
class QueueInfo:
    """One queue's depth and the sizes of its registries."""

    name: str
    queued: int
    started: int
    scheduled: int
    failed: int


@dataclass(frozen=True)
class WorkerInfo:
    """A live worker: its name, state and the job it is running, if any."""

    name: str
    state: str
    queues: tuple[str, ...]
    current_job: str | None


@dataclass(frozen=True)
class JobInfo:
    """One job, flattened for display; `traceback` is redacted."""

    id: str
    queue: str
    status: str
    server_id: int | None
    step: str | None
    description: str
    enqueued_at: datetime | None
    ended_at: datetime | None
    traceback: str | None


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def queue_infos(conn: redis.Redis) -> list[QueueInfo]:
    """Depth and registry sizes of each worker queue, in the order workers serve them."""
    infos = []
    for name in WORKER_QUEUES:
        q = queue(conn, name)
        infos.append(
            QueueInfo(
                name=name,
                queued=_int(q.count),
                started=_int(q.started_job_registry.count),
                scheduled=_int(q.scheduled_job_registry.count),
                failed=_int(q.failed_job_registry.count),
            )
        )
    return infos


def workers(conn: redis.Redis) -> list[WorkerInfo]:
    """The workers registered in Redis (live ones: RQ expires dead workers' keys)."""
    found: list[WorkerInfo] = []
    for worker in Worker.all(connection=conn):
        found.append(
            WorkerInfo(
                name=str(worker.name),
                state=str(worker.get_state()),
                queues=tuple(str(n) for n in worker.queue_names()),
                current_job=worker.get_current_job_id(),
            )
        )
    return sorted(found, key=lambda w: w.name)


def _traceback(job: Job) -> str | None:
    result = job.latest_result()
    text = getattr(result, "exc_string", None) if result is not None else None
    return redact(str(text)) if text else None


def _info(job: Job, queue_name: str, *, with_traceback: bool) -> JobInfo:
    meta: dict[str, Any] = job.get_meta(refresh=False) or {}
    server_id = meta.get("server_id")
    status = job.get_status(refresh=False)
    return JobInfo(
        id=str(job.id),
        queue=queue_name or str(job.origin or ""),
        status=str(getattr(status, "value", status) or "unknown"),
        server_id=int(server_id) if server_id is not None else None,
        step=str(meta["step"]) if meta.get("step") is not None else None,
        description=redact(str(job.description or "")),
        enqueued_at=job.enqueued_at,
        ended_at=job.ended_at,
        traceback=_traceback(job) if with_traceback else None,
    )


def _fetch(conn: redis.Redis, ids: Iterable[str]) -> list[Job]:
    jobs: list[Job | None] = Job.fetch_many(list(ids), connection=conn)
    return [job for job in jobs if job is not None]


def failed_jobs(conn: redis.Redis, limit: int = FAILED_LIMIT) -> list[JobInfo]:
    """Failed jobs of every worker queue, newest first, with their (redacted) tracebacks."""
    found: list[JobInfo] = []
    for name in WORKER_QUEUES:
        registry = queue(conn, name).failed_job_registry
        ids = [str(i) for i in registry.get_job_ids(0, limit - 1, desc=True)]
        found.extend(_info(job, name, with_traceback=True) for job in _fetch(conn, ids))
    return found


def requeue(conn: redis.Redis, jid: str) -> JobInfo:
    """Put a failed job back on its queue.

    Raises:
        JobNotFound: no failed job with that id.
    """
    for name in WORKER_QUEUES:
        registry = queue(conn, name).failed_job_registry
        if jid in {str(i) for i in registry.get_job_ids()}:
            job = registry.requeue(jid)
            log.info("job %s requeued on %s", jid, name)
            return _info(job, name, with_traceback=False)
    raise JobNotFound(f"no failed job {jid!r}")


def _registries(conn: redis.Redis, name: str) -> list[BaseRegistry]:
    q = queue(conn, name)
    return [
        q.started_job_registry,
        q.scheduled_job_registry,
        q.deferred_job_registry,
        q.failed_job_registry,
        q.finished_job_registry,
        q.canceled_job_registry,
    ]


def server_jobs(conn: redis.Redis, server_id: int, current: str | None = None) -> list[JobInfo]:
    """The jobs Redis still holds for one server (`srv<id>-...`), oldest first.

    Args:
        conn: Redis.
        server_id: the server.
        current: the server's `job_id`, included even if no registry lists it.
    """
    prefix = f"srv{server_id}-"
    ids: dict[str, str] = {}
    for name in WORKER_QUEUES:
        q = queue(conn, name)
        candidates = [str(i) for i in q.get_job_ids()]
        for registry in _registries(conn, name):
            candidates.extend(str(i) for i in registry.get_job_ids())
        for jid in candidates:
            if jid.startswith(prefix):
                ids.setdefault(jid, name)
    if current and current not in ids:
        ids[current] = ""
    infos = [
        _info(job, ids.get(str(job.id), ""), with_traceback=True) for job in _fetch(conn, list(ids))
    ]
    # RQ's enqueued_at is timezone-aware, and None for a job still scheduled:
    # a naive `datetime.min` stand-in made the sort raise TypeError, and the
    # TUI's server screen then never loaded (found by tests/leaks.py).
    return sorted(
        infos,
        key=lambda j: (j.enqueued_at.timestamp() if j.enqueued_at else float("-inf"), j.id),
    )
