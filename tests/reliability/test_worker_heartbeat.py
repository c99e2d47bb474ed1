"""Paced heartbeats and state writes: a busy worker writes its registration less, never
letting it expire early or show a stale state."""

from __future__ import annotations

import itertools
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


def _state_writes(monkeypatch: pytest.MonkeyPatch, conn: redis.Redis) -> list[str]:
    """The worker states sent to Redis, by direct write or pipeline."""
    writes: list[str] = []
    cls = type(conn)  # redis-py's Pipeline inherits its commands from Redis
    original = cls.hset

    def counting(self: Any, name: Any, key: Any = None, *a: Any, **k: Any) -> Any:
        if key == "state":
            writes.append(a[0] if a else k.get("value"))
        return original(self, name, key, *a, **k)

    monkeypatch.setattr(cls, "hset", counting)
    return writes


def test_a_worker_writes_its_state_only_when_it_changes(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = _state_writes(monkeypatch, redis_client)
    _run(redis_client, SimpleWorker, 10)
    plain = len(writes)
    writes.clear()
    _run(redis_client, PacedSimpleWorker, 10)
    assert plain >= 3 * 10  # RQ's own: idle, busy, idle per job
    # busy and idle per job: never the same state twice in a row
    assert all(a != b for a, b in itertools.pairwise(writes)), writes
    assert writes.count("busy") == 10
    assert len(writes) <= 2 * 10 + 3


def test_the_state_is_written_again_after_a_new_registration(
    redis_client: redis.Redis,
) -> None:
    worker = PacedSimpleWorker([queue(redis_client, WORKER_QUEUES[0])], connection=redis_client)
    worker.register_birth()
    worker.set_state("idle")
    assert worker.get_state() == "idle"
    # The same worker object registers again, its old hash gone (removed here).
    redis_client.delete(worker.key)
    worker.register_birth()
    worker.set_state("idle")
    assert redis_client.hget(worker.key, "state") == b"idle"
