"""A worker SIGKILLed and restarted under its fixed name starts again at once."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import redis
from rq import Worker

from jobs.queues import WORKER_QUEUES, queue
from jobs.worker import reclaim_name


def _registered(conn: redis.Redis, name: str, pid: int) -> None:
    worker = Worker([queue(conn, n) for n in WORKER_QUEUES], connection=conn, name=name)
    worker.register_birth()
    conn.hset(worker.key, "pid", str(pid))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_predecessor_frees_the_name(redis_client: redis.Redis) -> None:
    _registered(redis_client, "w-fixed", _dead_pid())
    fresh = Worker([queue(redis_client, WORKER_QUEUES[0])], connection=redis_client, name="w-fixed")
    with pytest.raises(ValueError, match="active worker named"):
        fresh.register_birth()  # what a restarted worker met before the fix
    assert reclaim_name(redis_client, "w-fixed") is True
    fresh.register_birth()
    assert reclaim_name(redis_client, "w-fixed") is False  # itself: alive


def test_a_live_worker_keeps_its_name(redis_client: redis.Redis) -> None:
    _registered(redis_client, "w-live", os.getpid())
    assert reclaim_name(redis_client, "w-live") is False
    assert reclaim_name(redis_client, "w-nobody") is False


def test_the_scheduler_lock_of_a_dead_worker_is_freed(redis_client: redis.Redis) -> None:
    import socket

    from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler

    from jobs.worker import release_dead_scheduler_locks

    lock = RQScheduler.get_locking_key(WORKER_QUEUES[0])
    redis_client.set(lock, "dead-one", ex=61)
    redis_client.hset(
        SCHEDULER_KEY_TEMPLATE % "dead-one",
        mapping={"hostname": socket.gethostname(), "pid": str(_dead_pid())},
    )
    other = RQScheduler.get_locking_key(WORKER_QUEUES[1])
    redis_client.set(other, "live-one", ex=61)
    redis_client.hset(
        SCHEDULER_KEY_TEMPLATE % "live-one",
        mapping={"hostname": socket.gethostname(), "pid": str(os.getpid())},
    )
    assert release_dead_scheduler_locks(redis_client) == [WORKER_QUEUES[0]]
    assert redis_client.get(lock) is None
    assert redis_client.get(other) == b"live-one"
