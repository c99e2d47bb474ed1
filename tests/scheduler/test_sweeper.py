"""The sweeper: Redis flushed mid-provision, and a worker killed mid-job."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
import redis
from rq import Queue, Retry, SimpleWorker
from rq.job import Job
from rq.registry import StartedJobRegistry

from core.domain.lifecycle import Status
from core.platform.runs import RunSummary, read_runs
from core.store.models import Event
from jobs import operator, sweeper
from jobs.context import use_context
from jobs.queues import FINISH
from sim.config import SimConfig
from sim.server import SimulatorServer
from tests import factories
from tests.pipeline.harness import Stack, WebServer, build_stack

REPO = Path(__file__).resolve().parents[2]


def deploy(stack: Stack) -> int:
    owner = factories.paying_customer(stack.ring)
    return operator.deploy(
        stack.redis, stack.settings, owner.external_id, "operator:test"
    ).server_id


def wait_db(condition: object, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def slow_boot_sim() -> Iterator[SimulatorServer]:
    # Cloud-init takes a second, so the callbacks come after the test's worker
    # loop has stopped and their injections stay queued until Redis is flushed.
    with SimulatorServer(SimConfig(seed=7, cloud_init_seconds=1.0)) as server:
        yield server


def test_redis_flushed_mid_provision_every_accepted_deploy_ends_ready(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_server_url: str,
    slow_boot_sim: SimulatorServer,
) -> None:
    sim = slow_boot_sim
    web = WebServer()
    stack = build_stack(
        tmp_path,
        redis_client,
        sim,
        public_url=web.url,
        RACHEL_BOOT_TIMEOUT="60s",
        RACHEL_SWEEP_GRACE="0.5s",
    )
    web.start(stack.settings, redis_server_url)
    try:
        booted = [deploy(stack) for _ in range(2)]
        stack.drain(
            lambda: all(
                stack.status(s) != Status.PENDING and stack.status(s) != Status.CREATING
                for s in booted
            ),
            what="the first servers to be created",
        )
        # Without a worker: the callbacks arrive and queue the injections, which stay queued.
        wait_db(
            lambda: all(stack.status(s) == Status.INJECTING_SECRETS for s in booted),
            "cloud-init callbacks",
        )
        fresh = [deploy(stack) for _ in range(2)]  # accepted, creation queued
        assert all(stack.status(s) == Status.PENDING for s in fresh)

        redis_client.flushdb()  # every queued and scheduled job is gone

        # The proof that work was lost: workers alone leave every server where it was.
        stack.drain(lambda: True)
        time.sleep(0.6)
        stack.drain(lambda: True)
        assert [stack.status(s) for s in booted + fresh] == ["injecting_secrets"] * 2 + [
            "pending"
        ] * 2

        everyone = booted + fresh
        stack.drain(
            lambda: (
                sweeper.sweep() is not None
                and all(stack.status(s) == Status.READY for s in everyone)
            ),
            timeout=60,
            what="every accepted deploy to be ready",
        )
    finally:
        web.stop()
        use_context(None)
    for server_id in everyone:
        notes = Event.select().where((Event.server == server_id) & (Event.kind == "sweep"))
        assert notes.count() >= 1, f"server {server_id} was not swept"
        assert "re-enqueued" in notes[0].message and notes[0].actor == "cron"
    assert len(stack.provider_servers()) == 4  # one VPS each, no duplicates
    stats = read_runs(redis_client)["sweep"]
    assert int(stats["acted_requeued_total"]) >= 4


def test_a_killed_workers_job_is_retried_within_seconds(
    tmp_path: Path, redis_client: redis.Redis, redis_server_url: str, sim: SimulatorServer
) -> None:
    stack = build_stack(tmp_path, redis_client, sim)
    q = Queue(FINISH, connection=redis_client)
    job = q.enqueue(
        "tests.scheduler.slowjobs.slow_once",
        "slow-marker",
        retry=Retry(max=2, interval=[1]),
        job_timeout=300,
    )
    script = (
        "import redis; from rq import Queue, SimpleWorker; "
        f"c = redis.Redis.from_url({redis_server_url!r}); "
        f"SimpleWorker([Queue({FINISH!r}, connection=c)], connection=c).work(burst=True)"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    try:
        wait_db(lambda: redis_client.get("slow-marker") is not None, "the job to start")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    killed_at = time.monotonic()
    registry = StartedJobRegistry(FINISH, connection=redis_client)
    assert job.get_status(refresh=True) == "started"
    # RQ alone would not notice for minutes: the execution's heartbeat has not expired.
    assert registry.get_expired_job_ids() == []

    summary = RunSummary("sweep")
    sweeper.recover_abandoned(stack.ctx, summary)
    assert summary.found["abandoned"] == 1 and summary.acted["recovered"] == 1
    assert "is gone" in summary.details[0]
    assert job.get_status(refresh=True) in ("scheduled", "queued")

    worker_here = SimpleWorker([q], connection=redis_client)
    deadline = time.monotonic() + 15
    while Job.fetch(job.id, connection=redis_client).get_status() != "finished":
        assert time.monotonic() < deadline, "the retried job did not finish"
        worker_here.work(burst=True, with_scheduler=True, logging_level="ERROR")
        time.sleep(0.1)
    assert Job.fetch(job.id, connection=redis_client).return_value() == "done"
    assert time.monotonic() - killed_at < 60
    use_context(None)
