"""One run of a scheduled task: a lock so that two schedulers do not overlap, a summary.

`task_run` wraps a task's body: it takes a Redis lock per task (two cron
schedulers, or a slow run meeting the next one, run it once at a time; every
action is also idempotent on its own), times the run, logs its one-line
summary and records it with `core.runs.record_run`.

The lock lives `LOCK_SECONDS` and the run renews it every third of that
while it lasts, so a run of any length keeps it, and a run whose worker was
killed holds up the next ones for at most `LOCK_SECONDS` (with a fixed five
minutes, the chaos run saw a killed worker stop the grace enforcer for five
minutes).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from core.platform.runs import RunSummary, record_run
from core.store.db import connection
from core.store.models import Event

log = logging.getLogger(__name__)

LOCK_SECONDS = 30
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('expire', KEYS[1], ARGV[2]) end return 0"
)


def _record_summary_event(summary: RunSummary) -> None:
    # Every run is in Redis (core.platform.runs); the audit trail gets the runs that found
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


class _Renewal:
    """Keeps a run's lock alive from a daemon thread until stopped."""

    def __init__(self, conn: redis.Redis, task: str, token: str, ttl: int) -> None:
        self._stop = threading.Event()
        self._args = (conn, task, token, ttl)
        self._thread = threading.Thread(target=self._run, name=f"lock-{task}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn, task, token, ttl = self._args
        while not self._stop.wait(ttl / 3):
            try:
                held = conn.eval(_RENEW, 1, lock_key(task), token, ttl)
            except redis.RedisError as exc:
                log.warning("%s: could not renew the run lock (%s); retrying", task, exc)
                continue
            if not held:
                log.warning("%s: the run lock was lost (Redis flushed?); the run goes on", task)
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@contextmanager
def task_run(
    conn: redis.Redis, task: str, ttl: int = LOCK_SECONDS, *, record_event: bool = True
) -> Iterator[RunSummary | None]:
    """Run `task` under its lock; yields its summary to fill, or None if it is already running.

    Args:
        conn: Redis.
        task: the task's name (one lock per name).
        ttl: seconds the lock outlives a run that stopped renewing it.
        record_event: add a fleet Event (kind `cron`) for a run that found or did
            something (off for a task that records an Event per server it acts on,
            every few seconds).
    """
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
    if not conn.set(lock_key(task), token, nx=True, ex=ttl):
        holder = conn.get(lock_key(task))
        if isinstance(holder, bytes):
            holder = holder.decode(errors="replace")
        where = holder.rsplit(":", 1)[0] if holder else "?"  # host:pid of the run that holds it
        log.info("%s: another run is in progress (%s); this one is skipped", task, where)
        yield None
        return
    renewal = _Renewal(conn, task, token, ttl)
    started, wall = time.monotonic(), time.time()
    summary = RunSummary(task)
    try:
        yield summary
    finally:
        renewal.stop()
        try:
            conn.eval(_RELEASE, 1, lock_key(task), token)
        except redis.RedisError as exc:
            log.warning("%s: could not release the run lock (%s); it expires by itself", task, exc)
        duration = time.monotonic() - started
        record_run(conn, summary, at=wall, duration=duration)
        if record_event:
            _record_summary_event(summary)
        level = logging.WARNING if summary.errors else logging.INFO
        log.log(level, "%s (%.2fs)", summary.line(), duration)
