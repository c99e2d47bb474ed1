"""`rachel-cloud cron`: RQ's cron scheduler with our tasks, intervals from settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import peewee
import redis
from rq import Queue

from jobs.cron import CRON_QUEUE, build_scheduler
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RACHEL_", "HCLOUD_", "DATABASE_URL", "REDIS_URL"))
    }
    return subprocess.run(  # noqa: PLW1510 - the tests read returncode
        [sys.executable, "-m", "cli.main", "cron", *args],
        cwd=tmp_path,
        env={**clean, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_scheduler_enqueues_every_task_at_its_interval(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    settings = make_settings(
        tmp_path,
        RACHEL_SWEEP_INTERVAL="10s",
        RACHEL_GRACE_INTERVAL="2m",
        RACHEL_RECONCILE_INTERVAL="1h",
        RACHEL_HEALTH_INTERVAL="15s",
        RACHEL_ROLLOUT_INTERVAL="3s",
        RACHEL_IMAGE_INTERVAL="4m",
    )
    scheduler = build_scheduler(redis_client, settings, name="test-cron")
    intervals = {job.name: job.interval for job in scheduler.get_jobs()}
    assert intervals == {
        "rachel-cloud:grace": 120,
        "rachel-cloud:reconcile": 3600,
        "rachel-cloud:sweep": 10,
        "rachel-cloud:prune": 3600,
        "rachel-cloud:health": 15,
        "rachel-cloud:rollout": 3,
        "rachel-cloud:images": 240,
        "rachel-cloud:pool": 30,
    }
    enqueued = scheduler.enqueue_jobs()  # interval jobs run at once on start
    assert len(enqueued) == 8
    funcs = sorted(job.func_name for job in Queue(CRON_QUEUE, connection=redis_client).jobs)
    assert funcs == [
        "jobs.grace.enforce_grace",
        "jobs.health.check_health",
        "jobs.housekeeping.prune_deliveries",
        "jobs.images.check_images",
        "jobs.pool.refill_pool",
        "jobs.reconcile.reconcile",
        "jobs.rollout.advance_rollouts",
        "jobs.sweeper.sweep",
    ]
    assert scheduler.enqueue_jobs() == []  # not due again yet


def test_cron_cli_list_run_and_bad_input(
    tmp_path: Path,
    db: peewee.Database,
    database_url: str,
    redis_server_url: str,
    redis_client: redis.Redis,
) -> None:
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server_url,
        "RACHEL_SWEEP_INTERVAL": "20s",
        "RACHEL_DATA_DIR": str(tmp_path / "data"),
    }
    listed = cli(tmp_path, "--list", **env)
    assert listed.returncode == 0, listed.stderr
    assert "sweep      every     20s on rc-finish" in listed.stdout
    ran = cli(tmp_path, "--run", "sweep", **env)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("sweep: found 0")
    status = cli(tmp_path, "--status", **env)
    assert "sweep      last run" in status.stdout and "grace      never ran" in status.stdout


def test_cron_cli_bad_input_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    env = {"RACHEL_DATA_DIR": str(tmp_path / "data")}
    for args, extra, message in (
        (("--run", "nothing"), {}, "Invalid value for '--run'"),
        (("--list",), {"RACHEL_SWEEP_INTERVAL": "often"}, "RACHEL_SWEEP_INTERVAL"),
        (("--list",), {"RACHEL_PHASE_LIMITS": "pending=5m"}, "missing a limit for creating"),
    ):
        bad = cli(tmp_path, *args, **{**env, **extra})
        assert bad.returncode == 2, bad.stdout
        assert message in bad.stderr and "Traceback" not in bad.stderr
