"""What RQ holds for our servers: live jobs per server, and started jobs' worker liveness.

Read by the sweeper and the reconciler. A job is live when RQ will still run
it: queued (also in a worker's intermediate queue), scheduled, deferred,
waiting for a rate-limit slot, or started. The registries can hold stale
entries, so every id found there is checked against its job's status.
"""

from __future__ import annotations

import logging
import socket
from collections import defaultdict
from collections.abc import Iterable

import redis
from rq.intermediate_queue import IntermediateQueue
from rq.rate_limit import RateLimitRegistry
from rq.registry import DeferredJobRegistry, ScheduledJobRegistry, StartedJobRegistry

from core.domain.reconcile import ActiveJob, parse_job_id
from core.domain.sweep import Execution
from core.platform.process import process_alive
from jobs.queues import WORKER_QUEUES, queue
from jobs.rq_internals import job_statuses, started_entries, worker_record

log = logging.getLogger(__name__)

LIVE_STATUSES = frozenset({"queued", "scheduled", "deferred", "rate_limited", "started"})


def _candidate_ids(conn: redis.Redis) -> set[str]:
    ids: set[str] = set()
    for name in WORKER_QUEUES:
        q = queue(conn, name)
        ids.update(q.get_job_ids())
        ids.update(IntermediateQueue(q.key, connection=conn).get_job_ids())
        for registry in (
            ScheduledJobRegistry(name, connection=conn),  # type: ignore[no-untyped-call]
            DeferredJobRegistry(name, connection=conn),
            StartedJobRegistry(name, connection=conn),
        ):
            ids.update(registry.get_job_ids(cleanup=False))
    for limit in RateLimitRegistry.all(conn):
        ids.update(limit.get_rate_limited_job_ids())
    return ids


def _waiting_ids(conn: redis.Redis) -> set[str]:
    """Ids in a queue, a worker's intermediate queue, or already started."""
    ids: set[str] = set()
    for name in WORKER_QUEUES:
        q = queue(conn, name)
        ids.update(q.get_job_ids())
        ids.update(IntermediateQueue(q.key, connection=conn).get_job_ids())
        ids.update(StartedJobRegistry(name, connection=conn).get_job_ids(cleanup=False))
    return ids


def live_jobs(conn: redis.Redis, also: Iterable[str] = ()) -> dict[int, list[ActiveJob]]:
    """Our live jobs by server id.

    Args:
        conn: Redis.
        also: further job ids to check (the servers' recorded `job_id`s), in
            case a job is between two of RQ's lists at the moment of reading.
    """
    ids = sorted(_candidate_ids(conn) | {jid for jid in also if jid})
    statuses = job_statuses(conn, ids)
    # Read after the statuses: a job that says "queued" but sits in no queue
    # was popped by a worker that died (SIGKILL) or whose reply a Redis restart
    # lost before RQ recorded it as started. RQ never runs it, yet its status
    # made it look live, so the sweeper left its server stuck for good (found
    # by the chaos run, tests/chaos). Such a job is not live.
    waiting = _waiting_ids(conn)
    found: dict[int, list[ActiveJob]] = defaultdict(list)
    for jid, status in zip(ids, statuses, strict=True):
        if status not in LIVE_STATUSES:
            continue
        if status == "queued" and jid not in waiting:
            log.warning("job %s is queued in no queue (its worker died taking it); lost", jid)
            continue
        job = parse_job_id(jid, status or "")
        if job is not None:
            found[job.server_id].append(job)
    return dict(found)


def worker_liveness(conn: redis.Redis, name: str) -> tuple[bool | None, float | None]:
    """(alive, last heartbeat as UNIX time) of worker `name`.

    Alive is False when its hash is gone (it expired, or the worker died) or,
    for a worker on this host, when its process is gone; True when its
    process on this host runs; None (unknown) for a worker on another host.
    """
    record = worker_record(conn, name)
    if record is None:
        return False, None
    pid = record.pid
    if record.hostname == socket.gethostname() and pid and pid.isdigit():
        return process_alive(int(pid)), record.last_heartbeat
    return None, record.last_heartbeat


def started_executions(conn: redis.Redis) -> dict[str, list[Execution]]:
    """The started jobs of every queue (by queue name), with their workers' liveness."""
    result: dict[str, list[Execution]] = {}
    workers: dict[str, tuple[bool | None, float | None]] = {}
    for name in WORKER_QUEUES:
        executions = []
        for entry in started_entries(conn, name):
            worker = entry.worker_name
            beats = [entry.last_heartbeat] if entry.last_heartbeat is not None else []
            if worker and worker not in workers:
                workers[worker] = worker_liveness(conn, worker)
            alive, worker_beat = workers.get(worker, (None, None))
            if worker_beat is not None:
                beats.append(worker_beat)
            executions.append(
                Execution(
                    job_id=entry.job_id,
                    composite_key=entry.composite_key,
                    worker_name=worker,
                    expires_at=entry.expires_at,
                    last_heartbeat=max(beats) if beats else None,
                    worker_alive=alive if worker else None,
                )
            )
        result[name] = executions
    return result
