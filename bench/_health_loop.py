"""The health task for `bench/heartbeat.py`: its pass, every interval, in a process of its own.

    python bench/_health_loop.py --task jobs.health:check_health --first-at T --until T2

Production runs the health task as a cron task (`rachel-cloud cron` enqueues
it every RACHEL_HEALTH_INTERVAL, a worker runs it); here one process runs the
same function on the same schedule, so that its CPU is the task's alone (a
worker's fork and RQ's bookkeeping are not counted). Prints one JSON object:
which task ran, and each pass's start (`time.monotonic()`), wall and CPU
seconds and result line, then waits for its stdin to close (the benchmark
reads its CPU time first).

`--task` is `module:function`, a function taking no argument that does one
pass with the process's job context (`jobs.context.context()`), as a cron task
does; `stand-in` is this file's `stand_in_pass`, the reads the task is
designed to make, with a trivial decision and no writes. A stand-in's figures
are NOT the task's: `bench/heartbeat.py` labels them and never counts them
towards the target.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import _common as c

c.ensure_repo_on_path()

from cli.common import runtime  # noqa: E402
from core.domain.heartbeats import HeartbeatStore  # noqa: E402
from core.domain.lifecycle import Status  # noqa: E402
from core.store.db import connection  # noqa: E402
from core.store.models import Server  # noqa: E402
from jobs.context import context  # noqa: E402

#: The real task's pass (H3's `jobs/health.py`; the cron task's function).
REAL_TASK = "jobs.health:check_health"
STAND_IN = "stand-in"


def stand_in_pass() -> str:
    """NOT the health task: its designed reads (ready rows, every latest heartbeat), no writes."""
    ctx = context()
    missing = ctx.settings.heartbeat_missing_seconds
    with connection():
        rows = list(
            Server.select(
                Server.id,
                Server.name,
                Server.health,
                Server.health_reason,
                Server.health_changed_at,
                Server.ready_at,
                Server.rachel8_commit,
                Server.heartbeat_credential_hash.is_null(False),
                Server.repair_window_started_at,
                Server.repair_restarts,
                Server.repair_rebooted_at,
                Server.breaker_until,
                Server.owner_notified_down_at,
            )
            .where(Server.status == Status.READY)
            .tuples()
        )
    latest = HeartbeatStore(ctx.redis).all_latest()
    now = time.time()
    changed = 0
    for row in rows:
        stored = latest.get(row[0])
        fine = (
            stored is not None
            and now - stored.received_at < missing
            and stored.heartbeat.service is not None
            and stored.heartbeat.service.running
            and stored.heartbeat.commit == row[6]
        )
        changed += (row[2] == "healthy") != fine
    return f"stand-in: {len(rows)} ready, {len(latest)} heartbeats, {changed} would change"


def pass_function(task: str) -> Callable[[], Any]:
    """The pass to run: the stand-in, or `module:function` imported now."""
    if task == STAND_IN:
        return stand_in_pass
    module, _, name = task.partition(":")
    func: Callable[[], Any] = getattr(importlib.import_module(module), name)
    return func


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default=REAL_TASK, help=f"module:function or {STAND_IN}")
    parser.add_argument("--first-at", type=float, required=True, help="time.monotonic() value")
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--until", type=float, required=True, help="time.monotonic() value")
    args = parser.parse_args()
    runtime("worker")
    one_pass = pass_function(args.task)
    passes = []
    at = args.first_at
    while at < args.until:
        time.sleep(max(0.0, at - time.monotonic()))
        began, cpu = time.monotonic(), time.process_time()
        result = one_pass()
        passes.append(
            {
                "at": began,
                "wall": time.monotonic() - began,
                "cpu": time.process_time() - cpu,
                "result": str(result)[:300],
            }
        )
        at += args.interval
    json.dump({"task": args.task, "passes": passes}, sys.stdout)
    sys.stdout.flush()
    # Alive until the benchmark has read this process's CPU (it closes our stdin).
    if not sys.stdin.isatty():
        sys.stdin.read()


if __name__ == "__main__":
    main()
