"""One run of a scheduled task: a lock so that two schedulers do not overlap, a summary.

`task_run` wraps a task's body: it takes a Redis lock per task (two cron
schedulers, or a slow run meeting the next one, run it once at a time; every
action is also idempotent on its own), times the run, logs its one-line
summary and records it with `core.runs.record_run`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from core.db import connection
from core.models import Event
from core.runs import RunSummary, record_run

log = logging.getLogger(__name__)

LOCK_SECONDS = 300
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def _record_summary_event(summary: RunSummary) -> None:
    # Every run is in Redis (core.runs); the audit trail gets the runs that found
    # or did something, so a sweep every 15 s does not bury it in "found 0".
    if not (summary.found or summary.acted or summary.errors):
        return
    try:
        with connection():
            Event.create(server=None, kind="cron", actor="cron", message=summary.line())
    except Exception as exc:  # the run's work is done; a missing summary is not fatal
        log.warning("%s: could not record the summary event: %s", summary.task, exc)


def lock_key(task: str) -> str:
    return f"rachel-cloud:cron:{task}:lock"


@contextmanager
def task_run(conn: redis.Redis, task: str) -> Iterator[RunSummary | None]:
    """Run `task` under its lock; yields its summary to fill, or None if it is already running."""
    token = uuid.uuid4().hex
    if not conn.set(lock_key(task), token, nx=True, ex=LOCK_SECONDS):
        log.info("%s: another run is in progress; this one is skipped", task)
        yield None
        return
    started, wall = time.monotonic(), time.time()
    summary = RunSummary(task)
    try:
        yield summary
    finally:
        try:
            conn.eval(_RELEASE, 1, lock_key(task), token)
        except redis.RedisError as exc:
            log.warning("%s: could not release the run lock (%s); it expires by itself", task, exc)
        duration = time.monotonic() - started
        record_run(conn, summary, at=wall, duration=duration)
        _record_summary_event(summary)
        level = logging.WARNING if summary.errors else logging.INFO
        log.log(level, "%s (%.2fs)", summary.line(), duration)
