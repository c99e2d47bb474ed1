"""The RQ worker process: serves the queues in priority order, with the scheduler."""

from __future__ import annotations

import logging

from rq import SimpleWorker, Worker
from rq.worker.base import BaseWorker

from core.db import connection
from jobs.context import JobContext, context, use_context
from jobs.queues import WORKER_QUEUES, queue

log = logging.getLogger(__name__)


def build_worker(
    ctx: JobContext, *, name: str | None = None, worker_class: str | None = None
) -> BaseWorker:
    """A worker on the rachel-cloud queues (fork: a work horse per job; simple: in-process)."""
    cls: type[BaseWorker] = (
        SimpleWorker if (worker_class or ctx.settings.worker_class) == "simple" else Worker
    )
    queues = [queue(ctx.redis, name) for name in WORKER_QUEUES]
    # A 10 s monitoring interval (RQ's default is 30) keeps a dead worker's job
    # registry entry short-lived, so the sweeper can retry it within a minute.
    return cls(queues, connection=ctx.redis, name=name, job_monitoring_interval=10)


def run(
    ctx: JobContext | None = None,
    *,
    burst: bool = False,
    name: str | None = None,
    worker_class: str | None = None,
) -> bool:
    """Run a worker until stopped (or, with `burst`, until the queues are empty)."""
    if ctx is not None:
        use_context(ctx)
    ctx = context()
    with connection():
        pass  # fail fast if the database is unreachable, before taking jobs
    worker = build_worker(ctx, name=name, worker_class=worker_class)
    log.info(
        "worker %s serving %s (%s)", worker.name, ", ".join(WORKER_QUEUES), type(worker).__name__
    )
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING"))
