"""The scheduled tasks' run lock: one run at a time, and a dead run's lock goes soon."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import redis

from jobs.taskrun import LOCK_SECONDS, lock_key, task_run
from tests.sim.conftest import REPO_ROOT


def test_a_second_run_is_skipped_and_says_who_holds_the_lock(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    with task_run(redis_client, "t-held") as first:
        assert first is not None
        # Short-lived (renewed while the run lasts): a killed run blocks the next ones briefly.
        assert 0 < redis_client.ttl(lock_key("t-held")) <= LOCK_SECONDS <= 60
        with caplog.at_level(logging.INFO), task_run(redis_client, "t-held") as second:
            assert second is None
        assert "another run is in progress" in caplog.text
        assert f":{os.getpid()})" in caplog.text  # host:pid of the holder
    assert redis_client.get(lock_key("t-held")) is None  # released
    with task_run(redis_client, "t-held") as again:
        assert again is not None


def test_a_long_run_keeps_its_short_lived_lock(redis_client: redis.Redis) -> None:
    skipped: list[bool] = []

    def try_meanwhile() -> None:
        with task_run(redis_client, "t-long", ttl=1) as other:
            skipped.append(other is None)

    with task_run(redis_client, "t-long", ttl=1) as run:
        assert run is not None
        for _ in range(5):  # 2.5 s: well past the TTL, renewed every third of it
            time.sleep(0.5)
            assert 0 < redis_client.ttl(lock_key("t-long")) <= 1
            thread = threading.Thread(target=try_meanwhile)
            thread.start()
            thread.join()
    assert skipped == [True] * 5


_HOLD = """
import sys, time, redis
from jobs.taskrun import task_run
with task_run(redis.Redis.from_url(sys.argv[1]), "t-killed", ttl=2) as run:
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_killed_run_holds_the_next_ones_up_for_its_ttl_only(
    redis_client: redis.Redis, redis_server_url: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD, redis_server_url],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        time.sleep(2.5)  # renewed meanwhile: still held
        with task_run(redis_client, "t-killed") as blocked:
            assert blocked is None
        child.send_signal(signal.SIGKILL)  # a worker killed mid-run: no release, no renewal
        child.wait(10)
        deadline = time.monotonic() + 3.0
        while redis_client.get(lock_key("t-killed")) is not None:
            assert time.monotonic() < deadline, "the dead run's lock outlived its TTL"
            time.sleep(0.1)
        with task_run(redis_client, "t-killed") as run:
            assert run is not None
    finally:
        child.kill()
        child.wait(10)
