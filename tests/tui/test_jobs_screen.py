"""The jobs screen shows what rq-dashboard shows: started and finished jobs, workers, cron runs.

Real Redis, real RQ workers: a burst `SimpleWorker` runs jobs to the finished
and failed registries, a live worker (registered, heartbeating) runs one job
of each outcome and is in the middle of a third, and the cron runs are
recorded as the tasks record them (`core.platform.runs.record_run`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.job import Job

from core.platform.runs import RunSummary, record_run
from jobs.queues import START
from tests.tui.conftest import NOW, SIZE, ago
from tests.tui.test_queries import PLANTED
from tests.tui.test_screens import open_jobs
from tui.app import RachelApp
from tui.cells import timestamp

pytestmark = pytest.mark.anyio

LIVE = "pilot-live"


def unix(seconds_ago: float) -> float:
    """NOW minus `seconds_ago`, as the UNIX time `record_run` stores."""
    return ago(seconds_ago).replace(tzinfo=UTC).timestamp()


def rows(app: RachelApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.fixture
def live_worker(redis_client: redis.Redis) -> Iterator[SimpleWorker]:
    """A registered worker that ran one job well, one badly, and is running a third."""
    start = Queue(START, connection=redis_client)
    worker = SimpleWorker([start], connection=redis_client, name=LIVE)
    worker.register_birth()  # type: ignore[no-untyped-call]

    def take(*args: object, **options: object) -> Job:
        job = start.enqueue(*args, **options)  # type: ignore[arg-type]
        start.remove(job.id)  # this worker has taken it: no other one will
        return job

    worker.execute_job(take("os.getpid", job_id="srv7-creating-a0-r0"), start)
    worker.execute_job(take("tests.tui.test_queries.boom", 8, job_id="srv8-creating-a0-r0"), start)
    running = take("os.getpid", job_id="srv9-cloud_init-a0-r0", meta={"step": "booting"})
    worker.prepare_execution(running)
    worker.prepare_job_execution(running)
    worker.heartbeat()
    try:
        yield worker
    finally:
        worker.register_death()  # type: ignore[no-untyped-call]


async def test_jobs_screen_shows_started_finished_workers_and_cron_runs(
    fleet, make_app, redis_client: redis.Redis, live_worker: SimpleWorker
) -> None:
    start = Queue(START, connection=redis_client)
    for n in (1, 2):
        start.enqueue("os.getpid", job_id=f"srv{n}-creating-a0-r0", meta={"step": "creating"})
    SimpleWorker([start], connection=redis_client, name="pilot-burst").work(
        burst=True, logging_level="ERROR"
    )
    record_run(redis_client, RunSummary("sweep", errors=0), at=unix(10), duration=0.2)
    stale = RunSummary("reconcile", errors=1, details=[f"token {PLANTED}"])
    record_run(redis_client, stale, at=unix(3600), duration=1.5)

    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_jobs(pilot, app)
        recent = rows(app, "#jobs-recent")
        running = recent[0]
        assert running[:4] == ["srv9-cloud_init-a0-r0", START, "booting", LIVE]
        assert running[5:7] == ["-", "running"]
        finished = {r[0]: r for r in recent[1:]}
        assert set(finished) == {
            "srv1-creating-a0-r0",
            "srv2-creating-a0-r0",
            "srv7-creating-a0-r0",
        }
        assert finished["srv1-creating-a0-r0"][3] == "pilot-burst"
        assert finished["srv7-creating-a0-r0"][3] == LIVE
        assert all(r[6] == "finished" and r[7].isdigit() for r in finished.values())  # the pid
        assert all(r[4] != "-" and r[5] != "-" for r in finished.values())

        (worker,) = rows(app, "#jobs-workers")  # the burst worker is gone
        heartbeat = live_worker.last_heartbeat
        assert heartbeat is not None
        expected = timestamp(heartbeat.astimezone(UTC).replace(tzinfo=None))
        assert worker[:6] == [LIVE, "busy", expected, "1", "1", worker[5]]
        assert worker[6] == "srv9-cloud_init-a0-r0"

        cron = {r[0]: r for r in rows(app, "#jobs-cron")}
        assert set(cron) >= {"grace", "reconcile", "sweep", "prune"}
        assert cron["sweep"][1:4] == [
            "15s",
            timestamp(ago(10)),
            timestamp(NOW + timedelta(seconds=5)),
        ]
        assert cron["sweep"][4] == "sweep: found 0; did 0; 0 errors"
        assert cron["reconcile"][2:4] == [timestamp(ago(3600)), "due"]
        assert cron["reconcile"][4].endswith("1 error")
        assert cron["grace"][2:] == ["-", "never run", "-"]
        assert PLANTED not in str(rows(app, "#jobs-cron"))
