"""The fleet queries the TUI reads (core.domain.fleet additions) and `jobs.inspect`, for real."""

from __future__ import annotations

import peewee
import pytest
import redis
from rq import Queue, SimpleWorker, Worker

from core.domain.fleet import (
    last_events,
    provisioning_stats,
    recent_provisioning_times,
    status_counts,
)
from core.platform.clock import ManualClock
from core.store.models import Event
from jobs import inspect
from jobs.queues import DEPROVISION, FINISH, START, UPDATE, enqueue_step
from jobs.registry import JobFunction
from tests.tui.conftest import NOW, ago, seed_fleet

PLANTED = "sk-ant-planted0123456789secret"


def boom(server_id: int) -> None:
    """A job that fails with a secret-shaped value in its message."""
    raise RuntimeError(f"server {server_id} exploded near {PLANTED}")


def test_fleet_statistics(db: peewee.Database) -> None:
    servers = seed_fleet()
    stats = provisioning_stats(120, clock=ManualClock(NOW))
    assert stats.count == 2  # 95 s and 140 s, both within the hour
    assert stats.sla_hit_rate == 0.5
    assert stats.p50 == pytest.approx(117.5)
    later = provisioning_stats(120, clock=ManualClock(ago(-3000)))
    assert later.count == 1  # only the one ready 205 s before NOW is within the hour then
    assert recent_provisioning_times() == [140.0, 95.0]
    counts = status_counts()
    assert counts["failed"] == 2 and counts["ready"] == 2 and counts["deleted"] == 1

    events = last_events()
    assert events[servers["ready"].id].message == "injecting_secrets -> ready"
    assert servers["pending"].id not in events
    Event.create(server=servers["ready"], at=ago(1), kind="operator", message="note", actor="cron")
    one = last_events([servers["ready"].id])
    assert list(one) == [servers["ready"].id]
    assert one[servers["ready"].id].message == "note"


def test_queue_inspection_and_requeue(redis_client: redis.Redis) -> None:
    enqueue_step(
        redis_client, FINISH, JobFunction.INJECT_SECRETS, 41, "injecting_secrets", record=False
    )
    enqueue_step(
        redis_client, DEPROVISION, JobFunction.DEPROVISION, 42, "deprovisioning", record=False
    )
    infos = {q.name: q for q in inspect.queue_infos(redis_client)}
    assert list(infos) == [FINISH, DEPROVISION, START, UPDATE]
    assert infos[FINISH].queued == 1 and infos[START].queued == 0

    Queue(FINISH, connection=redis_client).empty()
    Queue(START, connection=redis_client).enqueue(
        "tests.tui.test_queries.boom",
        42,
        job_id="srv42-creating-a0-r0",
        meta={"server_id": 42, "step": "creating"},
    )
    SimpleWorker([Queue(START, connection=redis_client)], connection=redis_client).work(
        burst=True, logging_level="ERROR"
    )
    failed = inspect.failed_jobs(redis_client)
    assert [j.id for j in failed] == ["srv42-creating-a0-r0"]
    job = failed[0]
    assert job.server_id == 42 and job.step == "creating" and job.queue == START
    assert job.traceback is not None and "exploded" in job.traceback
    assert PLANTED not in job.traceback  # tracebacks are redacted

    jobs = inspect.server_jobs(redis_client, 42)
    assert {j.id for j in jobs} == {"srv42-creating-a0-r0", "srv42-deprovisioning-a0-r0"}
    assert inspect.server_jobs(redis_client, 4) == []  # srv4- is not a prefix of srv42-

    requeued = inspect.requeue(redis_client, "srv42-creating-a0-r0")
    assert requeued.queue == START
    assert inspect.failed_jobs(redis_client) == []
    assert Queue(START, connection=redis_client).job_ids == ["srv42-creating-a0-r0"]
    with pytest.raises(inspect.JobNotFound):
        inspect.requeue(redis_client, "srv42-creating-a0-r0")


def test_live_workers(redis_client: redis.Redis) -> None:
    assert inspect.workers(redis_client) == []
    worker = Worker([Queue(START, connection=redis_client)], connection=redis_client, name="w1")
    worker.register_birth()
    try:
        found = inspect.workers(redis_client)
        assert [w.name for w in found] == ["w1"]
        assert found[0].queues == (START,)
    finally:
        worker.register_death()
    assert inspect.workers(redis_client) == []
