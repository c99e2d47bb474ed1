"""The sweeper's decisions, as pure functions: lost work to re-enqueue, abandoned jobs.

An accepted deploy must always end ready or failed. Work goes missing when
Redis loses its data (flushed, restored from an old snapshot), when a worker
is killed mid-job, or when an enqueue after a commit failed. `plan` finds the
servers in an in-flight status with no live job to carry them forward and says
which step to enqueue again; `abandoned` says whether a started job's worker
is gone, so that RQ's own abandoned-job handling (retry, else failed) can run
now instead of at its next maintenance pass (every 10 minutes by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from core.domain.reconcile import PHASE_STEPS, ActiveJob, DbServer, has_job
from core.platform.settings import Settings

#: The step enqueued again for a server found without a job, by status.
RESUME_STEP: Mapping[str, str] = {
    "pending": "creating",
    "creating": "creating",
    "cloud_init": "boot-deadline",
    "injecting_secrets": "injecting_secrets",
    "deprovisioning": "deprovisioning",
}


@dataclass(frozen=True)
class Resume:
    """A server whose work vanished, and the step to enqueue again."""

    server_id: int
    status: str
    step: str
    reason: str


def plan(
    servers: Sequence[DbServer],
    jobs: Mapping[int, Sequence[ActiveJob]],
    now: datetime,
    settings: Settings,
) -> list[Resume]:
    """The in-flight servers to re-enqueue (pure).

    A server is left alone when it changed status less than RACHEL_SWEEP_GRACE
    ago (whoever moved it is enqueueing its next step), when a job that
    carries it forward is alive, and when it is deprovisioning after giving up
    its retries (that is the reconciler's to report, not a lost job).
    """
    resumes: list[Resume] = []
    for server in servers:
        if server.status not in PHASE_STEPS:
            continue
        quiet = (now - server.status_changed_at).total_seconds()
        if quiet < settings.sweep_grace_seconds:
            continue
        if has_job(server, jobs.get(server.id, ())):
            continue
        if (
            server.status == "deprovisioning"
            and server.last_error
            and server.retries - server.throttled >= settings.phase_retries
        ):
            continue
        step = RESUME_STEP[server.status]
        if step == "injecting_secrets" and server.job_id and "-finalize-" in server.job_id:
            step = "finalize"  # secrets were written; only marking it ready was lost
        job = f"job {server.job_id}" if server.job_id else "no job recorded"
        resumes.append(
            Resume(
                server.id,
                server.status,
                step,
                f"{server.status} for {quiet:.0f}s with no job queued or running "
                f"({job} is gone or ended)",
            )
        )
    return resumes


@dataclass(frozen=True)
class Execution:
    """A started job as the StartedJobRegistry and the worker's hash describe it.

    Attributes:
        job_id: the job.
        composite_key: the registry member (`job_id:execution_id`).
        worker_name: the worker that started it.
        expires_at: the registry score: RQ's own expiry of the last heartbeat (UNIX time).
        last_heartbeat: the latest heartbeat of the execution or its worker (UNIX time).
        worker_alive: False when the worker is known dead (its hash is gone, or
            its process is gone on this host), True when known alive, None when unknown.
    """

    job_id: str
    composite_key: str
    worker_name: str
    expires_at: float
    last_heartbeat: float | None
    worker_alive: bool | None


def abandoned(execution: Execution, now: float, abandoned_after: float) -> str | None:
    """Why `execution` is abandoned, or None while its worker may still be running it (pure)."""
    if execution.expires_at <= now:
        return "its heartbeat expired"
    if execution.worker_alive is False:
        return f"worker {execution.worker_name or '?'} is gone"
    if execution.worker_alive is True:
        return None
    if execution.last_heartbeat is not None:
        silent = now - execution.last_heartbeat
        if silent >= abandoned_after:
            return f"worker {execution.worker_name or '?'} silent for {silent:.0f}s"
    return None
