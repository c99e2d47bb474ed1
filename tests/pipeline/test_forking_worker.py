"""A real `rachel-cloud worker` (forking work horses) whose horses are killed mid-job.

RQ reports a horse that died as a failed job and its crash retry queues it
again; the phase jobs are idempotent, so every deploy still ends ready and no
server is created twice.
"""

from __future__ import annotations

import contextlib
import gc
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
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler

from core.domain.lifecycle import Status
from core.store.models import Server
from jobs import operator
from jobs.context import use_context
from jobs.queues import WORKER_QUEUES
from jobs.worker import preload
from sim.server import SimulatorServer
from tests import factories
from tests.pipeline.harness import Stack, WebServer, build_stack

REPO = Path(__file__).resolve().parents[2]


def scheduler_pids(conn: redis.Redis) -> set[int]:
    """The pids of the RQ schedulers holding our queues' locks (as they registered them)."""
    pids = set()
    for name in WORKER_QUEUES:
        owner = conn.get(RQScheduler.get_locking_key(name))
        if owner is not None:
            pid = conn.hget(SCHEDULER_KEY_TEMPLATE % owner.decode(), "pid")
            if pid is not None and pid.decode().isdigit():
                pids.add(int(pid))
    return pids


def children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


@pytest.fixture
def stack(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_server_url: str,
    sim: SimulatorServer,
) -> Iterator[tuple[Stack, WebServer]]:
    web = WebServer()
    built = build_stack(
        tmp_path,
        redis_client,
        sim,
        public_url=web.url,
        RACHEL_BOOT_TIMEOUT="20s",
        REDIS_URL=redis_server_url,
    )
    web.start(built.settings, redis_server_url)
    yield built, web
    web.stop()
    use_context(None)


def test_killed_work_horses_do_not_lose_or_duplicate_servers(
    stack: tuple[Stack, WebServer], database_url: str, redis_server_url: str, tmp_path: Path
) -> None:
    s, _ = stack
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RACHEL_", "HCLOUD_"))}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_server_url,
            "RACHEL_DATA_DIR": str(tmp_path / "worker"),
            "RACHEL_WORKER_CLASS": "fork",
            "RACHEL_MASTER_KEYS": ",".join(s.settings.master_keys or ()),
            "RACHEL_SIM_PORT": str(s.sim.port),
            "RACHEL_PUBLIC_URL": s.settings.public_url,
            "RACHEL_NAME_PREFIX": s.settings.name_prefix,
            "RACHEL_RETRY_BASE": "0.05s",
            "RACHEL_BOOT_TIMEOUT": "20s",
        }
    )
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "worker"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        # The worker's scheduler (a child too, registered in Redis) must be
        # spared: retries with backoff need it. Any other child is a work horse.
        # (The first child is not always the scheduler: one started while the
        # worker prepared was taken for it, and the real scheduler was killed.)
        deadline = time.monotonic() + 30
        while not scheduler_pids(s.redis) & children(worker.pid):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker never started its scheduler"
            time.sleep(0.05)
        owners = [factories.paying_customer(s.ring) for _ in range(6)]
        ids = [
            operator.deploy(s.redis, s.settings, o.external_id, "operator:test").server_id
            for o in owners
        ]
        kills = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            statuses = {Server.get_by_id(i).status for i in ids}
            if statuses == {Status.READY}:
                break
            if kills < 3:
                for horse in children(worker.pid) - scheduler_pids(s.redis):
                    # A horse may finish its job between the listing and the kill.
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(horse, signal.SIGKILL)
                        kills += 1
            time.sleep(0.01)
        final = {i: Server.get_by_id(i).status for i in ids}
        tail = (tmp_path / "worker.log").read_text()[-3000:]
        assert set(final.values()) == {Status.READY}, (final, tail)
        assert kills >= 1, "the test killed no work horse"
        assert "Work-horse terminated unexpectedly" in (tmp_path / "worker.log").read_text(), (
            "a horse was killed while it ran a job"
        )
        provider = sorted(p for p in s.provider_servers())
        assert provider == sorted(Server.get_by_id(i).provider_id for i in ids), "no duplicates"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            worker.kill()
        log.close()


def test_the_worker_loads_what_jobs_need_before_it_forks(stack: tuple[Stack, WebServer]) -> None:
    # Else every horse imports paramiko & co. again (~200 ms of CPU per job).
    s, _ = stack
    names = preload(s.ctx)
    try:
        expected = {"jobs.creating", "jobs.injecting", "jobs.deadlines", "jobs.deprovisioning"}
        assert expected <= set(names)
        assert all(name in sys.modules for name in [*names, "paramiko", "nacl.signing"])
        assert s.ctx._hetzner is not None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
