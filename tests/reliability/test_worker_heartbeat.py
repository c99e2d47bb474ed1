"""Paced heartbeats: a busy worker renews its registration less, and it never expires early."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from rq import SimpleWorker, Worker

from jobs.queues import WORKER_QUEUES, queue
from jobs.worker import PacedForkWorker, PacedSimpleWorker


def _counted(monkeypatch: pytest.MonkeyPatch, cls: type[Any]) -> list[int | None]:
    """The timeouts of the heartbeats RQ itself sends (its method on `cls`, counted)."""
    calls: list[int | None] = []
    original = cls.heartbeat

    def counting(self: Any, timeout: int | None = None, pipeline: Any = None) -> None:
        calls.append(timeout)
        original(self, timeout, pipeline=pipeline)

    monkeypatch.setattr(cls, "heartbeat", counting)
    return calls


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    return _counted(monkeypatch, SimpleWorker)


def _run(conn: redis.Redis, cls: type[SimpleWorker], jobs: int) -> None:
    q = queue(conn, WORKER_QUEUES[0])
    queued = [q.enqueue("os.getpid") for _ in range(jobs)]
    worker = cls([queue(conn, n) for n in WORKER_QUEUES], connection=conn)
    worker.work(burst=True, logging_level="ERROR")
    assert all(job.get_status() == "finished" for job in queued)


def test_a_busy_worker_renews_its_registration_less_often(
    redis_client: redis.Redis, sent: list[int | None]
) -> None:
    _run(redis_client, SimpleWorker, 20)
    plain = len(sent)
    sent.clear()
    _run(redis_client, PacedSimpleWorker, 20)
    assert plain >= 5 * 20  # RQ's own: five per job
    assert len(sent) <= 2 * 20 + 3  # the job's own, and the one that restores the full life


def test_the_registration_gets_its_full_life_back_after_a_job(
    redis_client: redis.Redis, sent: list[int | None]
) -> None:
    worker = PacedSimpleWorker([queue(redis_client, WORKER_QUEUES[0])], connection=redis_client)
    worker.register_birth()
    full = worker.worker_ttl + 60
    worker.heartbeat()
    worker.heartbeat()  # within the pace: not sent
    assert sent == [None]
    worker.heartbeat(70)  # a job starts: the registration's life shortens to its interval
    assert 0 < redis_client.ttl(worker.key) <= 70
    worker.heartbeat()  # the job ended: sent at once, whatever the pace
    assert sent == [None, 70, None]
    assert redis_client.ttl(worker.key) > 70 and redis_client.ttl(worker.key) <= full


def test_a_forking_worker_restores_its_registration_after_each_job(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = _counted(monkeypatch, Worker)
    q = queue(redis_client, WORKER_QUEUES[0])
    job = q.enqueue("os.getpid")
    worker = PacedForkWorker([q], connection=redis_client)
    worker.register_birth()
    worker.heartbeat()
    # The work horse's job-start heartbeat, sent from its own process, shortens
    # the registration's life; this process never sees it.
    worker.execute_job(job, q)
    assert job.get_status() == "finished"
    short = worker.job_monitoring_interval + 60
    assert 0 < redis_client.ttl(worker.key) <= short
    worker.heartbeat()  # within the pace, but after a job: sent
    assert redis_client.ttl(worker.key) > short
    assert sent.count(None) == 2
