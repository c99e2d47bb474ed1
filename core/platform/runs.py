"""Run summaries of the scheduled tasks (grace, reconcile, sweep), kept in Redis.

Every run of a task records what it found and what it did, for operators
(`rachel-cloud cron --status`), the web app's `/metrics` and the TUI. Events
in the database belong to one server each; a run's summary belongs to none,
so it lives here (and in the log), while every server a run acts on also gets
an Event on its own timeline.

Format (simple on purpose, read by other processes):

- `rachel-cloud:cron:<task>`: a hash with
  `last_run` (UNIX time the run ended), `last_duration` (seconds),
  `last_found`, `last_acted`, `last_errors` (counts of the last run),
  `last_summary` (one line of text), `runs` (runs so far), and running totals
  `found_total`, `acted_total`, `errors_total`, and `found_<kind>_total` /
  `acted_<kind>_total` per kind of finding (orphan, lost, stuck, warn, ...);
- `rachel-cloud:cron:<task>:history`: a list of the last `HISTORY` runs, newest
  first, each a JSON object `{"at", "duration", "found", "acted", "errors",
  "summary", "details"}`.

`prometheus_lines` renders the hashes as Prometheus text for `/metrics`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

log = logging.getLogger(__name__)

TASKS = ("grace", "reconcile", "sweep", "health")
HISTORY = 50
_PREFIX = "rachel-cloud:cron:"


def run_key(task: str) -> str:
    """The hash of `task`'s run statistics."""
    return f"{_PREFIX}{task}"


def history_key(task: str) -> str:
    """The list of `task`'s recent run summaries."""
    return f"{_PREFIX}{task}:history"


@dataclass
class RunSummary:
    """What one run found and did.

    Attributes:
        task: grace, reconcile or sweep.
        found: counts of findings by kind.
        acted: counts of actions by kind.
        errors: actions that failed (logged, the run went on).
        details: one line per finding or action, for the history and the CLI.
    """

    task: str
    found: Counter[str] = field(default_factory=Counter)
    acted: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    details: list[str] = field(default_factory=list)

    def line(self) -> str:
        """A one-line summary: `found 2 (orphan 1, stuck 1); did 1 (delete 1); 0 errors`."""

        def part(counts: Counter[str]) -> str:
            total = sum(counts.values())
            inner = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v)
            return f"{total} ({inner})" if inner else str(total)

        return (
            f"{self.task}: found {part(self.found)}; did {part(self.acted)}; "
            f"{self.errors} error{'s' if self.errors != 1 else ''}"
        )


def record_run(client: redis.Redis, summary: RunSummary, *, at: float, duration: float) -> None:
    """Store a run's summary (best effort: a Redis error is logged, not raised)."""
    found, acted = sum(summary.found.values()), sum(summary.acted.values())
    entry = {
        "at": at,
        "duration": round(duration, 3),
        "found": dict(summary.found),
        "acted": dict(summary.acted),
        "errors": summary.errors,
        "summary": summary.line(),
        "details": summary.details[:200],
    }
    key = run_key(summary.task)
    try:
        pipe = client.pipeline(transaction=True)
        pipe.hset(
            key,
            mapping={
                "last_run": at,
                "last_duration": round(duration, 3),
                "last_found": found,
                "last_acted": acted,
                "last_errors": summary.errors,
                "last_summary": summary.line(),
            },
        )
        pipe.hincrby(key, "runs", 1)
        pipe.hincrby(key, "found_total", found)
        pipe.hincrby(key, "acted_total", acted)
        pipe.hincrby(key, "errors_total", summary.errors)
        for kind, count in summary.found.items():
            pipe.hincrby(key, f"found_{kind}_total", count)
        for kind, count in summary.acted.items():
            pipe.hincrby(key, f"acted_{kind}_total", count)
        pipe.lpush(history_key(summary.task), json.dumps(entry, default=str))
        pipe.ltrim(history_key(summary.task), 0, HISTORY - 1)
        pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not record the %s run summary: %s", summary.task, exc)


def read_runs(client: redis.Redis, tasks: Sequence[str] = TASKS) -> dict[str, dict[str, str]]:
    """Each of `tasks`' run statistics (empty for a task that never ran)."""
    result: dict[str, dict[str, str]] = {}
    for task in tasks:
        raw: Mapping[Any, Any] = client.hgetall(run_key(task))
        result[task] = {_text(k): _text(v) for k, v in raw.items()}
    return result


def read_history(client: redis.Redis, task: str, limit: int = 10) -> list[dict[str, Any]]:
    """The last `limit` run summaries of `task`, newest first."""
    raw: list[Any] = client.lrange(history_key(task), 0, limit - 1)
    entries = []
    for item in raw:
        try:
            entries.append(json.loads(item))
        except ValueError:
            continue
    return entries


def prometheus_lines(runs: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The run statistics as Prometheus text lines (HELP/TYPE included)."""
    lines = [
        "# HELP rachel_cloud_cron_last_run_timestamp_seconds When each scheduled task last ran.",
        "# TYPE rachel_cloud_cron_last_run_timestamp_seconds gauge",
    ]
    for task, stats in sorted(runs.items()):
        if "last_run" in stats:
            lines.append(
                f'rachel_cloud_cron_last_run_timestamp_seconds{{task="{task}"}} {stats["last_run"]}'
            )
    for name, help_text in (
        ("found", "Findings of the scheduled tasks, by kind."),
        ("acted", "Actions of the scheduled tasks, by kind."),
    ):
        metric = f"rachel_cloud_cron_{name}_total"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        for task, stats in sorted(runs.items()):
            for key, value in sorted(stats.items()):
                if key.startswith(f"{name}_") and key.endswith("_total") and key != f"{name}_total":
                    kind = key[len(name) + 1 : -len("_total")]
                    lines.append(f'{metric}{{task="{task}",kind="{kind}"}} {value}')
    lines += [
        "# HELP rachel_cloud_cron_errors_total Actions of the scheduled tasks that failed.",
        "# TYPE rachel_cloud_cron_errors_total counter",
    ]
    for task, stats in sorted(runs.items()):
        if "errors_total" in stats:
            lines.append(f'rachel_cloud_cron_errors_total{{task="{task}"}} {stats["errors_total"]}')
    return lines


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
