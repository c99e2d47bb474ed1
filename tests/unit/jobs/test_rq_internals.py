"""RQ still keeps what `jobs.rq_internals` relies on where it relies on it.

Real RQ objects write to a real Redis server, and the module reads (or
changes) what they wrote: an RQ release that renames a key, a hash field or
a registry's member format, or changes what a registry score means, fails
here rather than in a sweep that silently finds nothing.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import timedelta

import pytest
import redis
from rq import Queue, Retry, SimpleWorker
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler

from jobs.rq_internals import (
    delete_if_scheduled,
    expire_started,
    job_statuses,
    release_scheduler_lock,
    scheduler_lock,
    set_state_locally,
    started_entries,
    worker_record,
    worker_registered,
)

QUEUE = "rc-test"


@pytest.fixture
def q(redis_client: redis.Redis) -> Queue:
    return Queue(QUEUE, connection=redis_client)


def started(conn: redis.Redis, q: Queue, name: str, **options: object) -> tuple[Job, str]:
    """A job RQ's own worker has started (and then lost): (the job, its registry member)."""
    job = q.enqueue("os.getpid", **options)
    worker = SimpleWorker([q], connection=conn, name=name)
    worker.register_birth()  # type: ignore[no-untyped-call]
    execution = worker.prepare_execution(job)
    worker.prepare_job_execution(job)
    return job, execution.composite_key


def test_job_statuses_are_the_ones_rq_reports(redis_client: redis.Redis, q: Queue) -> None:
    queued = q.enqueue("os.getpid")
    scheduled = q.enqueue_in(timedelta(minutes=5), "os.getpid")
    statuses = job_statuses(redis_client, [queued.id, scheduled.id, "gone"])
    assert statuses == [queued.get_status(), scheduled.get_status(), None]
    assert statuses == ["queued", "scheduled", None]
    assert job_statuses(redis_client, []) == []


def test_a_scheduled_job_is_deleted_only_while_it_waits(
    redis_client: redis.Redis, q: Queue
) -> None:
    scheduled = q.enqueue_in(timedelta(minutes=5), "os.getpid")
    registry = ScheduledJobRegistry(QUEUE, connection=redis_client)  # type: ignore[no-untyped-call]
    assert scheduled.id in registry.get_job_ids()
    assert delete_if_scheduled(redis_client, QUEUE, scheduled.id)
    assert registry.get_job_ids() == [] and not Job.exists(scheduled.id, redis_client)
    assert not delete_if_scheduled(redis_client, QUEUE, scheduled.id)
    # Once in its queue (RQ's scheduler moved it), it is left to run.
    queued = q.enqueue("os.getpid")
    assert not delete_if_scheduled(redis_client, QUEUE, queued.id)
    assert Job.exists(queued.id, redis_client) and queued.id in q.get_job_ids()


def test_started_entries_are_rqs_executions_with_their_expiry(
    redis_client: redis.Redis, q: Queue
) -> None:
    before = time.time()
    job, member = started(redis_client, q, "w-entries", job_timeout=300)
    registry = StartedJobRegistry(QUEUE, connection=redis_client)
    assert registry.get_job_and_execution_ids(cleanup=False) == [tuple(member.split(":", 1))]
    (entry,) = started_entries(redis_client, QUEUE)
    assert (entry.job_id, entry.composite_key, entry.worker_name) == (job.id, member, "w-entries")
    # The score is when RQ gives up on the execution: its heartbeat TTL from now.
    assert before < entry.expires_at <= time.time() + 300 + 60
    assert entry.last_heartbeat is not None and before - 1 <= entry.last_heartbeat <= time.time()
    assert registry.get_expired_job_ids() == []


def test_expired_entries_go_to_rqs_abandoned_job_handling(
    redis_client: redis.Redis, q: Queue
) -> None:
    retried, retried_member = started(redis_client, q, "w-1", retry=Retry(max=1))
    failed, failed_member = started(redis_client, q, "w-2")
    alive, _ = started(redis_client, q, "w-3")
    expire_started(redis_client, QUEUE, [retried_member, failed_member, "gone:x"], time.time())
    assert retried.get_status(refresh=True) in ("queued", "scheduled")
    assert failed.get_status(refresh=True) == "failed"
    assert failed.id in FailedJobRegistry(QUEUE, connection=redis_client).get_job_ids()
    assert alive.get_status(refresh=True) == "started"
    assert [e.job_id for e in started_entries(redis_client, QUEUE)] == [alive.id]
    expire_started(redis_client, QUEUE, [], time.time())  # nothing to do, no error


def test_worker_records_are_rqs_registration(redis_client: redis.Redis, q: Queue) -> None:
    assert worker_record(redis_client, "w-reg") is None
    assert not worker_registered(redis_client, "w-reg")
    worker = SimpleWorker([q], connection=redis_client, name="w-reg")
    worker.register_birth()  # type: ignore[no-untyped-call]
    worker.heartbeat()
    record = worker_record(redis_client, "w-reg")
    assert record is not None and worker.last_heartbeat is not None
    assert (record.hostname, record.pid) == (socket.gethostname(), str(os.getpid()))
    assert record.last_heartbeat == pytest.approx(worker.last_heartbeat.timestamp(), abs=1e-3)
    assert worker_registered(redis_client, "w-reg")
    worker.register_death()  # type: ignore[no-untyped-call]
    assert not worker_registered(redis_client, "w-reg")


def test_a_worker_keeps_its_state_in_the_attribute_get_state_reads(
    redis_client: redis.Redis, q: Queue
) -> None:
    worker = SimpleWorker([q], connection=redis_client, name="w-state")
    worker.register_birth()  # type: ignore[no-untyped-call]
    worker.set_state("idle")
    set_state_locally(worker, "busy")
    assert worker.get_state() == "busy"
    assert redis_client.hget(worker.key, "state") == b"idle", "nothing written"


def test_scheduler_locks_name_rqs_scheduler_and_are_freed_only_by_owner(
    redis_client: redis.Redis,
) -> None:
    assert scheduler_lock(redis_client, QUEUE) is None
    scheduler = RQScheduler([QUEUE], connection=redis_client)
    assert scheduler.acquire_locks() == {QUEUE}  # type: ignore[no-untyped-call]
    scheduler.register_birth()  # as its process does once forked
    lock = scheduler_lock(redis_client, QUEUE)
    assert lock is not None
    assert (lock.owner, lock.hostname, lock.pid) == (
        scheduler.name,
        scheduler.hostname,
        str(os.getpid()),
    )
    assert lock.on_this_host
    # Another scheduler took the lock meanwhile: it stays.
    redis_client.set(RQScheduler.get_locking_key(QUEUE), "another")
    assert not release_scheduler_lock(redis_client, lock)
    redis_client.set(RQScheduler.get_locking_key(QUEUE), scheduler.name)
    assert release_scheduler_lock(redis_client, lock)
    assert scheduler_lock(redis_client, QUEUE) is None
