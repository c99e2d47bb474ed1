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
does.
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

#: The real task's pass (H3's `jobs/health.py`; the cron task's function).
REAL_TASK = "jobs.health:check_health"


def pass_function(task: str) -> Callable[[], Any]:
    """The pass to run: `module:function`, imported now."""
    module, _, name = task.partition(":")
    func: Callable[[], Any] = getattr(importlib.import_module(module), name)
    return func


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default=REAL_TASK, help="module:function")
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
