"""The job registry names every RQ job once, and every enqueue goes through it."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq.job import Job

from jobs.cron import tasks
from jobs.enqueue import request_intake
from jobs.queues import FINISH, START, enqueue_step
from jobs.registry import CRON_JOBS, JobFunction
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[3]
#: The packages whose source may enqueue (tests may name stored paths: they check them).
SOURCE = ("core", "jobs", "webhook", "tui", "cli", "sim", "bench")
REGISTRY = REPO / "jobs" / "registry.py"
#: A dotted job path, or the start of one assembled in an f-string.
DOTTED_JOB = re.compile(r"^jobs\.\w+\.")
#: The arguments each job is enqueued with, as its signature; these are what
#: queued jobs of an older release call, so a change here must stay compatible.
SIGNATURES = {
    JobFunction.CREATE_SERVER: "(server_id: int) -> str",
    JobFunction.CHECK_BOOT_DEADLINE: "(server_id: int, attempt: int, check: int = 0) -> str",
    JobFunction.INJECT_SECRETS: "(server_id: int) -> str",
    JobFunction.FINALIZE: "(server_id: int) -> str",
    JobFunction.DEPROVISION: "(server_id: int) -> str",
    JobFunction.CLEANUP: "(server_id: int, retry: int = 0) -> str",
    JobFunction.CARRY_OUT_DEPLOYS: "(limit: int = 10000) -> int",
    JobFunction.ENFORCE_GRACE: "() -> str",
    JobFunction.RECONCILE: "(apply: bool | None = None) -> str",
    JobFunction.SWEEP: "() -> str",
    JobFunction.PRUNE_DELIVERIES: "() -> str",
    JobFunction.POLL_CALLBACKS: "() -> str",
    JobFunction.CHECK_HEALTH: "() -> str",
    JobFunction.ADVANCE_ROLLOUTS: "() -> str",
    JobFunction.ADVANCE_ROLLOUT: "(rollout_id: int) -> str",
    JobFunction.UPDATE_SERVER: "(target_id: int) -> str",
    JobFunction.ROLLBACK_SERVER: "(target_id: int) -> str",
    JobFunction.BUILD_IMAGE: "(image_id: int) -> str",
    JobFunction.CHECK_IMAGES: "() -> str",
    JobFunction.REFILL_POOL: "() -> str",
    JobFunction.PROBE_SERVER: "(server_id: int) -> str",
    JobFunction.REPAIR_SERVER: (
        "(server_id: int, action: str, why: str = '', next_step: str = '') -> str"
    ),
    JobFunction.ASK_HEARTBEAT: "(server_id: int) -> str",
    JobFunction.TELL_OWNER: "(server_id: int, what: str, problem: str) -> str",
    JobFunction.ALERT_OPERATORS: (
        "(server_id: int | None, what: str, why: str, next_step: str) -> str"
    ),
}


def resolve(job: JobFunction) -> Callable[..., Any]:
    """What a worker runs for `job`: its module imported, the attribute looked up."""
    module, _, name = job.path.rpartition(".")
    func = getattr(importlib.import_module(module), name)
    assert callable(func), job
    return func  # type: ignore[no-any-return]


def python_files(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((REPO / package).rglob("*.py"))


def defined_jobs() -> set[str]:
    """Dotted paths of the functions in jobs/ documented as RQ jobs (the convention)."""
    found = set()
    for path in python_files("jobs"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and (ast.get_docstring(node) or "").startswith(
                "RQ job"
            ):
                found.add(f"jobs.{path.stem}.{node.name}")
    return found


@pytest.mark.parametrize("job", list(JobFunction), ids=lambda job: job.name)
def test_each_entry_resolves_to_its_job_function(job: JobFunction) -> None:
    func = resolve(job)
    assert f"{func.__module__}.{func.__qualname__}" == job.path
    assert str(inspect.signature(func, eval_str=True)) == SIGNATURES[job]
    assert (inspect.getdoc(func) or "").startswith("RQ job"), f"{job.path} is not documented"


def test_the_paths_are_plain_strings_that_never_change() -> None:
    assert set(SIGNATURES) == set(JobFunction)
    for job in JobFunction:
        assert type(job.path) is str and job.path == job.value
    assert JobFunction.CREATE_SERVER.path == "jobs.creating.create_server"
    assert JobFunction.CARRY_OUT_DEPLOYS.path == "jobs.intake.carry_out_deploys"


def test_every_job_function_in_jobs_is_registered() -> None:
    assert defined_jobs() == {job.path for job in JobFunction}


def test_no_job_path_is_spelled_outside_the_registry() -> None:
    spelled = []
    for path in python_files(*SOURCE):
        if path == REGISTRY:
            continue
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and DOTTED_JOB.match(node.value)
            ):
                spelled.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value!r}")
    assert spelled == [], "name jobs by jobs.registry.JobFunction:\n" + "\n".join(spelled)


@pytest.mark.parametrize("dispatch", ["enqueue", "poll"])
def test_the_cron_tasks_are_the_registered_cron_jobs(tmp_path: Path, dispatch: str) -> None:
    settings = make_settings(tmp_path, RACHEL_CALLBACK_DISPATCH=dispatch)
    registered = {f"{t.func.__module__}.{t.func.__qualname__}" for t in tasks(settings)}
    expected = {job.path for job in CRON_JOBS}
    if dispatch == "enqueue":
        expected.discard(JobFunction.POLL_CALLBACKS.path)
    assert registered == expected


def test_redis_stores_the_plain_path(redis_client: redis.Redis) -> None:
    # A pickled enum member would name jobs.registry in Redis: an older worker,
    # or one that cannot import it, could not even read the job.
    jid = enqueue_step(redis_client, FINISH, JobFunction.FINALIZE, 7, "finalize", record=False)
    delayed = enqueue_step(
        redis_client, FINISH, JobFunction.CLEANUP, 7, "cleanup", delay=60, record=False
    )
    intake = request_intake(redis_client)
    assert intake is not None
    stored = {i: Job.fetch(i, connection=redis_client) for i in (jid, delayed, intake)}
    assert {i: (type(j.func_name), j.func_name) for i, j in stored.items()} == {
        jid: (str, "jobs.injecting.finalize"),
        delayed: (str, "jobs.cleanup.cleanup"),
        intake: (str, "jobs.intake.carry_out_deploys"),
    }
    assert stored[intake].origin == START
