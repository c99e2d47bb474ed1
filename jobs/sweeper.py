"""The sweeper: accepted work whose job vanished is enqueued again; abandoned jobs retried.

Two passes, every RACHEL_SWEEP_INTERVAL:

1. Abandoned jobs. RQ finds the jobs of a killed worker only when a worker
   runs its maintenance (every 10 minutes by default) and only once the
   execution's heartbeat expired (90 s for a forked job, the job timeout +
   60 s for a SimpleWorker). Here a started job is abandoned as soon as its
   worker is known dead (its process is gone on this host, or its worker
   hash expired) or silent for RACHEL_ABANDONED_AFTER (another host); its
   registry entry is expired now and RQ's own `StartedJobRegistry.cleanup`
   does the rest: retry (our jobs carry `Retry` for crashes), else failed,
   and the rate-limit slot is freed.
2. Vanished work. Servers in pending, creating, cloud_init, injecting_secrets
   or deprovisioning with no live job for their step (`core.sweep.plan`) get
   that step enqueued again under a fresh job id (the sweep's time stands in
   for the retry number, so it never meets an id RQ still remembers), with an
   Event on the server's timeline saying why.
3. Stalled intake. Deploys stored more than `INTAKE_STALL_SECONDS` ago and
   not yet carried out (the web process died between commit and enqueue, or
   Redis was down) get an intake job.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, timedelta

from core.domain import intake
from core.domain.lifecycle import record_event
from core.domain.reconcile import PHASE_STEPS, DbServer
from core.domain.sweep import abandoned, plan
from core.platform.logs import server_logger
from core.platform.runs import RunSummary
from core.store.db import connection
from core.store.models import Server
from jobs.context import JobContext, context
from jobs.enqueue import INTAKE_FLAG, create_rate_limit, request_intake
from jobs.jobscan import live_jobs, started_executions
from jobs.queues import DEPROVISION, FINISH, START, enqueue_step
from jobs.registry import JobFunction
from jobs.rq_internals import expire_started
from jobs.taskrun import task_run

log = logging.getLogger(__name__)

#: A stored deploy older than this without an intake job is stalled. Longer
#: than the intake flag's lifetime, so a job that is merely queued is not doubled.
INTAKE_STALL_SECONDS = 45


def sweep() -> str:
    """RQ job (cron): recover abandoned jobs and re-enqueue vanished work."""
    ctx = context()
    with task_run(ctx.redis, "sweep") as summary:
        if summary is None:
            return "skipped: already running"
        run(ctx, summary)
        return summary.line()


def run(ctx: JobContext, summary: RunSummary | None = None) -> RunSummary:
    """Both passes of the sweeper; returns what it found and did."""
    summary = summary if summary is not None else RunSummary("sweep")
    recover_abandoned(ctx, summary)
    with connection():
        resume_vanished(ctx, summary)
        resume_intake(ctx, summary)
    return summary


def resume_intake(ctx: JobContext, summary: RunSummary) -> None:
    """Queue an intake job when stored deploys have waited too long for one."""
    stalled = intake.pending(ctx.clock.now() - timedelta(seconds=INTAKE_STALL_SECONDS))
    if not stalled:
        return
    summary.found["stalled intake"] += stalled
    ctx.redis.delete(INTAKE_FLAG)  # whatever job it stood for did not come
    jid = request_intake(ctx.redis)
    message = f"{stalled} stored deploy(s) waited over {INTAKE_STALL_SECONDS} s; queued {jid}"
    log.warning("sweeper: %s", message)
    summary.acted["intake"] += 1
    summary.details.append(message)


def recover_abandoned(ctx: JobContext, summary: RunSummary) -> None:
    """Hand the started jobs of dead workers to RQ's abandoned-job handling now."""
    now = time.time()
    for queue_name, executions in started_executions(ctx.redis).items():
        dead = []
        for execution in executions:
            why = abandoned(execution, now, ctx.settings.abandoned_after_seconds)
            if why is None:
                continue
            dead.append(execution)
            summary.found["abandoned"] += 1
            summary.details.append(f"job {execution.job_id} abandoned: {why}")
            log.warning(
                "job %s on %s abandoned (%s); RQ will retry it or mark it failed",
                execution.job_id,
                queue_name,
                why,
            )
        if not dead:
            continue
        expire_started(ctx.redis, queue_name, [e.composite_key for e in dead], now)
        summary.acted["recovered"] += len(dead)


def resume_vanished(ctx: JobContext, summary: RunSummary) -> None:
    """Re-enqueue the step of every in-flight server that has no live job."""
    rows = list(Server.select().where(Server.status.in_(list(PHASE_STEPS))))
    servers = [DbServer.from_row(row) for row in rows]
    jobs = live_jobs(ctx.redis, also=[s.job_id for s in servers if s.job_id])
    for item in plan(servers, jobs, ctx.clock.now(), ctx.settings):
        summary.found["vanished"] += 1
        server = Server.get_or_none(Server.id == item.server_id)
        if server is None or server.status != item.status:
            continue  # it moved on meanwhile
        try:
            jid = resume(ctx, server, item.step)
        except Exception as exc:  # one server's trouble must not stop the sweep
            summary.errors += 1
            server_logger(log, server.id, server.status).error(
                "could not re-enqueue %s: %s", item.step, exc
            )
            continue
        message = f"{item.reason}; re-enqueued {item.step} as {jid}"
        record_event(server.id, "sweep", message, actor="cron", clock=ctx.clock)
        server_logger(log, server.id, server.status).warning("sweeper: %s", message)
        summary.acted["requeued"] += 1
        summary.details.append(f"server {server.id}: {message}")


def resume(ctx: JobContext, server: Server, step: str) -> str:
    """Enqueue `step` for `server` again under a fresh id; returns the job id."""
    now = ctx.clock.now()
    sweep_no = int(now.replace(tzinfo=UTC).timestamp())
    entry = server.status_changed_at
    if step == "creating":
        return enqueue_step(
            ctx.redis,
            START,
            JobFunction.CREATE_SERVER,
            server.id,
            "creating",
            attempt=server.attempt,
            entry=entry,
            retry=sweep_no,
            rate_limit=create_rate_limit(ctx.settings),
        )
    if step == "boot-deadline":
        deadline = server.deadline_at or (
            server.status_changed_at + timedelta(seconds=ctx.settings.boot_timeout_seconds)
        )
        return enqueue_step(
            ctx.redis,
            FINISH,
            JobFunction.CHECK_BOOT_DEADLINE,
            server.id,
            "boot-deadline",
            attempt=server.attempt,
            retry=sweep_no,
            delay=max(0.0, (deadline - now).total_seconds()) + 1.0,
            record=False,
            extra_args=(server.attempt, sweep_no),
        )
    if step in ("injecting_secrets", "finalize"):
        return enqueue_step(
            ctx.redis,
            FINISH,
            JobFunction.INJECT_SECRETS if step == "injecting_secrets" else JobFunction.FINALIZE,
            server.id,
            step,
            attempt=server.attempt,
            entry=entry,
            retry=sweep_no,
        )
    if step == "deprovisioning":
        return enqueue_step(
            ctx.redis,
            DEPROVISION,
            JobFunction.DEPROVISION,
            server.id,
            "deprovisioning",
            attempt=server.attempt,
            entry=entry,
            retry=sweep_no,
        )
    raise ValueError(f"the sweeper cannot resume step {step!r}")
