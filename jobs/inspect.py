"""Read-only views of the job queues for operators (the TUI's jobs screen), and requeue.

What rq-dashboard shows, for the TUI and `rachel-cloud jobs` alike: queue
depths, started and recently finished jobs, workers with their heartbeat and
counts, failed jobs, and the cron tasks' last and next runs. Everything here
is plain data (`QueueInfo`, `WorkerInfo`, `JobInfo`, `CronInfo`) so that
callers never touch RQ objects. Tracebacks and error text pass through
`core.redaction.redact` before they leave this module: a failed job's
traceback may quote a value that must never reach a screen.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from rq import Worker
from rq.job import Job
from rq.registry import BaseRegistry

from core.errors import RachelError
from core.platform.runs import read_runs
from core.platform.settings import Settings
from core.security.redaction import redact
from jobs.cron import tasks
from jobs.queues import WORKER_QUEUES, queue

log = logging.getLogger(__name__)

#: Most failed jobs listed per queue (newest first).
FAILED_LIMIT = 200
#: Most started or finished jobs listed, over every queue (newest first), as rq-dashboard pages.
RECENT_LIMIT = 50
#: Longest result text kept: a job's return value is a one-line summary, not a document.
RESULT_CHARS = 120


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
    last_heartbeat: datetime | None = None  # naive UTC
    successful: int = 0
    failed: int = 0
    working_seconds: float = 0.0


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
    started_at: datetime | None = None
    worker: str | None = None
    result: str | None = None  # the return value (redacted, shortened) or the error's last line


@dataclass(frozen=True)
class CronInfo:
    """One scheduled task: how often it runs, its last run and when the next is due.

    Attributes:
        task: the task's name in `jobs.cron`.
        interval: seconds between runs.
        last_run: when the last run ended (naive UTC), None if it never ran.
        next_run: `last_run + interval`, None if it never ran.
        due: the next run is at or past `now` (or the task never ran).
        result: the last run's one-line summary.
        errors: failed actions in the last run.
        runs: runs so far.
        duration: how long the last run took, in seconds.
    """

    task: str
    interval: int
    last_run: datetime | None
    next_run: datetime | None
    due: bool
    result: str
    errors: int
    runs: int
    duration: float


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
                last_heartbeat=_naive(worker.last_heartbeat),
                successful=_int(worker.successful_job_count),
                failed=_int(worker.failed_job_count),
                working_seconds=float(worker.total_working_time or 0),
            )
        )
    return sorted(found, key=lambda w: w.name)


def _traceback(job: Job) -> str | None:
    result = job.latest_result()
    text = getattr(result, "exc_string", None) if result is not None else None
    return redact(str(text)) if text else None


def _naive(value: datetime | None) -> datetime | None:
    # RQ's times are aware UTC, ours (core.platform.clock) naive UTC: one kind to compare.
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _result(job: Job) -> str | None:
    result = job.latest_result()
    if result is None:
        return None
    if result.exc_string:
        lines = str(result.exc_string).strip().splitlines()
        text = lines[-1] if lines else "failed"
    elif result.return_value is None:
        return None
    else:
        text = " ".join(str(result.return_value).split())
    text = redact(text)
    return text if len(text) <= RESULT_CHARS else text[: RESULT_CHARS - 1] + "…"


def _info(job: Job, queue_name: str, *, with_traceback: bool, with_result: bool = False) -> JobInfo:
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
        started_at=job.started_at,
        worker=job.worker_name,
        result=_result(job) if with_result else None,
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


def _recent(conn: redis.Redis, finished: bool, limit: int) -> list[JobInfo]:
    found: list[JobInfo] = []
    for name in WORKER_QUEUES:
        q = queue(conn, name)
        registry = q.finished_job_registry if finished else q.started_job_registry
        ids = [str(i) for i in registry.get_job_ids(0, limit - 1, desc=True)]
        found.extend(
            _info(job, name, with_traceback=False, with_result=True) for job in _fetch(conn, ids)
        )

    def newest(job: JobInfo) -> float:
        at = job.ended_at if finished else job.started_at
        return at.timestamp() if at else float("-inf")

    return sorted(found, key=newest, reverse=True)[:limit]


def started_jobs(conn: redis.Redis, limit: int = RECENT_LIMIT) -> list[JobInfo]:
    """The jobs running now (every worker queue's started registry), newest start first."""
    return _recent(conn, False, limit)


def finished_jobs(conn: redis.Redis, limit: int = RECENT_LIMIT) -> list[JobInfo]:
    """The jobs that ended well and whose result RQ still keeps, newest end first."""
    return _recent(conn, True, limit)


def next_run(
    last_run: datetime | None, interval: float, now: datetime
) -> tuple[datetime | None, bool]:
    """When a task runs next, and whether that is now or past (due).

    Args:
        last_run: when the last run ended, None if it never ran.
        interval: seconds between runs.
        now: the time to compare with, of the same kind (naive or aware) as `last_run`.

    Returns:
        `(last_run + interval, due)`; `(None, True)` for a task that never ran.
    """
    if last_run is None:
        return None, True
    at = last_run + timedelta(seconds=interval)
    return at, at <= now


def cron_tasks(conn: redis.Redis, settings: Settings, now: datetime) -> list[CronInfo]:
    """Every scheduled task of `jobs.cron` with its last run (core.platform.runs) and next run.

    Args:
        conn: Redis.
        settings: the intervals.
        now: naive UTC (core.platform.clock's kind), to tell which tasks are due.
    """
    table = tasks(settings)
    runs = read_runs(conn, tuple(t.name for t in table))
    infos = []
    for task in table:
        stats = runs.get(task.name, {})
        last = (
            datetime.fromtimestamp(float(stats["last_run"]), UTC).replace(tzinfo=None)
            if stats.get("last_run")
            else None
        )
        at, due = next_run(last, task.interval, _naive(now) or now)
        infos.append(
            CronInfo(
                task=task.name,
                interval=task.interval,
                last_run=last,
                next_run=at,
                due=due,
                result=redact(stats.get("last_summary", "")),
                errors=int(stats.get("last_errors") or 0),
                runs=int(stats.get("runs") or 0),
                duration=float(stats.get("last_duration") or 0),
            )
        )
    return infos


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
