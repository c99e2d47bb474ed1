"""The RQ worker process: serves the queues in priority order, with the scheduler."""

from __future__ import annotations

import gc
import importlib
import logging
import pkgutil
import time
from typing import Any

import redis
from rq import SimpleWorker, Worker
from rq.worker.base import BaseWorker

import jobs
from core.platform.process import process_alive
from core.store import rows
from core.store.db import connection
from core.store.models import Customer, Server
from jobs.context import JobContext, context, use_context
from jobs.jobscan import started_executions, worker_liveness
from jobs.queues import WORKER_QUEUES, queue
from jobs.rq_internals import (
    expire_started,
    release_scheduler_lock,
    scheduler_lock,
    set_state_locally,
    worker_key,
    worker_registered,
)

log = logging.getLogger(__name__)


#: Standard-library modules that libraries the jobs use import only when first
#: called (requests reads ~/.netrc through `netrc` on every request).
LAZY_IMPORTS = ("netrc",)


def preload(ctx: JobContext) -> list[str]:
    """Import and build what every job needs, then freeze the heap.

    A forked work horse starts as a copy of its worker: what the worker has
    imported, the horse has for free, and what it has not, every horse
    imports again and throws away at its exit (paramiko, PyNaCl and
    cryptography's bindings for an injection, ~200 ms of CPU per job measured
    by bench/provision.py). So the worker imports every module of the `jobs`
    package (job functions are named by dotted path and live there, new ones
    included) before it forks any horse. It also builds what jobs would
    otherwise each build on first use: the Hetzner client (no connection is
    opened: a horse opens its own, as it does for the database and Redis) and
    the SQL of the row reads (`core.store.rows`).

    `gc.freeze` then moves everything allocated so far out of the collector's
    reach: a horse's collections never walk (and so never write to, which
    would copy) the pages of the worker's long-lived objects, and the worker's
    own full collections skip them too.

    Returns:
        The modules imported (for the log).
    """
    names = [f"jobs.{m.name}" for m in pkgutil.iter_modules(jobs.__path__)]
    for name in [*names, *LAZY_IMPORTS]:
        importlib.import_module(name)
    _ = ctx.hetzner
    rows.prepare(Server, Customer)
    gc.collect()
    gc.freeze()
    return names


#: How often a busy worker renews its registration in Redis at most.
HEARTBEAT_PACE_SECONDS = 1.0


class PacedHeartbeat:
    """Renew the worker's registration at most once a second while it is busy.

    RQ renews it (an HSET and two EXPIREs) five times per job: twice around
    the dequeue, once per loop, once with the suspension check and once as the
    job starts, which was 8% of a worker's CPU and a third of its Redis round
    trips in bench/provision.py. The registration lives `worker_ttl + 60` s
    (8 minutes); renewing it more than once a second changes nothing anyone
    reads. A heartbeat with its own timeout (the one that starts a job, which
    shortens the registration's life to the job's monitoring interval) always
    goes out, and so does the next default one after it, which restores the
    full life: an idle worker's registration never expires early.
    """

    worker_ttl: int
    _beat_at: float = float("-inf")
    _beat_ttl: int | None = None

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        default = self.worker_ttl + 60
        ttl = timeout or default
        now = time.monotonic()
        if ttl == default == self._beat_ttl and now - self._beat_at < HEARTBEAT_PACE_SECONDS:
            return
        self._beat_at, self._beat_ttl = now, ttl
        super().heartbeat(timeout, pipeline=pipeline)  # type: ignore[misc]

    def execute_job(self, job: Any, queue: Any) -> None:
        try:
            super().execute_job(job, queue)  # type: ignore[misc]
        finally:
            # A forked work horse sends the job-start heartbeat from its own
            # process, so this one never saw the registration's life shortened:
            # the next default heartbeat goes out whatever the pace.
            self._beat_ttl = None


class StateOnChange:
    """Write the worker's state to Redis only when it changes.

    RQ writes `idle` when a job ends and again when the worker goes back to
    the queues, two round trips a job apart with nothing in between: one
    HSET per job that changed nothing anyone reads (bench/provision.py runs
    two jobs per provision). A state written through a pipeline may never be
    sent (a discarded pipeline), so the next direct write always goes out.
    """

    _state: str  # RQ's own (set only through `jobs.rq_internals`)
    _state_written: str | None = None

    def set_state(self, state: str, pipeline: Any = None) -> None:
        if pipeline is None and state == self._state_written:
            set_state_locally(self, state)
            return
        super().set_state(state, pipeline=pipeline)  # type: ignore[misc]
        self._state_written = state if pipeline is None else None

    def register_birth(self, *args: Any, **kwargs: Any) -> None:
        # A new registration hash: whatever was written before is gone.
        self._state_written = None
        super().register_birth(*args, **kwargs)  # type: ignore[misc]


class PacedSimpleWorker(PacedHeartbeat, StateOnChange, SimpleWorker):
    """RQ's SimpleWorker (jobs in the worker's process), with paced heartbeats."""


class PacedForkWorker(PacedHeartbeat, StateOnChange, Worker):
    """RQ's Worker (a forked work horse per job), with paced heartbeats."""


def build_worker(
    ctx: JobContext, *, name: str | None = None, worker_class: str | None = None
) -> BaseWorker:
    """A worker on the rachel-cloud queues (fork: a work horse per job; simple: in-process)."""
    cls: type[BaseWorker] = (
        PacedSimpleWorker
        if (worker_class or ctx.settings.worker_class) == "simple"
        else PacedForkWorker
    )
    queues = [queue(ctx.redis, name) for name in WORKER_QUEUES]
    # A 10 s monitoring interval (RQ's default is 30) keeps a dead worker's job
    # registry entry short-lived, so the sweeper can retry it within a minute.
    # Maintenance every minute rather than RQ's 10: a worker whose scheduler is
    # not running tries for the scheduler lock then, so when the holder died on
    # another host, scheduled jobs wait at most its 61 s lock lease plus this.
    return cls(
        queues,
        connection=ctx.redis,
        name=name,
        job_monitoring_interval=10,
        maintenance_interval=60,
    )


def reclaim_name(conn: redis.Redis, name: str) -> bool:
    """Retire the registration of a dead worker of this host that had this name.

    A worker restarted under its fixed name (`rachel-cloud up`'s supervisor
    restarts the same command line) after a SIGKILL found its predecessor's
    hash still in Redis, and RQ refused to start ("There exists an active
    worker named ... already") until that hash expired, minutes later: the
    supervisor gave up on it and the stack lost a worker for good (found by
    the chaos run, tests/chaos). The predecessor's started jobs go to RQ's
    abandoned-job handling first (retried, as the sweeper would), then its
    death is registered, which frees the name.

    Returns:
        True when a dead predecessor was retired.
    """
    alive, _ = worker_liveness(conn, name)
    if alive is not False or not worker_registered(conn, name):
        return False
    now = time.time()
    for queue_name, executions in started_executions(conn).items():
        orphaned = [e.composite_key for e in executions if e.worker_name == name]
        if orphaned:
            expire_started(conn, queue_name, orphaned, now)
    old = Worker.find_by_key(worker_key(name), connection=conn)
    if old is not None:
        old.register_death()  # type: ignore[no-untyped-call]
    log.warning("worker %s: its previous process is gone; retired its registration", name)
    return True


def release_dead_scheduler_locks(conn: redis.Redis) -> list[str]:
    """Free the scheduler locks held by a scheduler process of this host that is gone.

    One worker's scheduler moves scheduled jobs (retries with backoff, boot
    deadlines) to their queues, under a lock that lives 61 s past its last
    heartbeat. When that worker was SIGKILLed, the others looked for the lock
    again only at their maintenance, every 10 minutes, so every delayed retry
    and deadline check stalled for up to 10 minutes (found by the chaos run,
    tests/chaos). A worker starting on the host where the holder died takes the
    lock over at once.

    Returns:
        The queues whose lock was freed.
    """
    freed = []
    for name in WORKER_QUEUES:
        lock = scheduler_lock(conn, name)
        if lock is None:
            continue
        if lock.pid is None or not lock.on_this_host:
            continue  # another host's, or not registered yet: its lock expires by itself
        if not lock.pid.isdigit() or int(lock.pid) <= 0 or process_alive(int(lock.pid)):
            continue
        if release_scheduler_lock(conn, lock):
            freed.append(name)
    if freed:
        log.warning("freed the scheduler locks of a dead worker for %s", ", ".join(freed))
    return freed


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
    if name:
        reclaim_name(ctx.redis, name)
    release_dead_scheduler_locks(ctx.redis)
    preloaded = preload(ctx)
    log.debug("preloaded %d job modules", len(preloaded))
    worker = build_worker(ctx, name=name, worker_class=worker_class)
    log.info(
        "worker %s serving %s (%s)", worker.name, ", ".join(WORKER_QUEUES), type(worker).__name__
    )
    return bool(worker.work(burst=burst, with_scheduler=True, logging_level="WARNING"))
