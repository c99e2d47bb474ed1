"""The cron config: which scheduled tasks run, on which queue, how often (settings).

`rachel-cloud cron` builds an RQ `CronScheduler` with `build_scheduler` and
starts it; the scheduler only enqueues, the workers run the tasks. Every task
is safe to run from two schedulers at once (a per-task lock, and idempotent
actions), so a second cron process is a spare, not a hazard.

| task | function | interval |
|---|---|---|
| grace | `jobs.grace.enforce_grace` | RACHEL_GRACE_INTERVAL |
| reconcile | `jobs.reconcile.reconcile` | RACHEL_RECONCILE_INTERVAL, RACHEL_RECONCILE_APPLY |
| sweep | `jobs.sweeper.sweep` | RACHEL_SWEEP_INTERVAL |
| prune | `jobs.housekeeping.prune_deliveries` | hourly (RACHEL_DELIVERY_RETENTION) |
| poll | `jobs.callback_poll.poll_callbacks` | RACHEL_CALLBACK_POLL_INTERVAL (poll mode only) |
| health | `jobs.health.check_health` | RACHEL_HEALTH_INTERVAL |
| rollout | `jobs.rollout.advance_rollouts` | RACHEL_ROLLOUT_INTERVAL |
| images | `jobs.images.check_images` | RACHEL_IMAGE_INTERVAL |
| pool | `jobs.pool.refill_pool` | RACHEL_POOL_INTERVAL (also drains a disabled pool) |

The tasks go to the `rc-finish` queue, which every worker serves first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
from rq.cron import CronScheduler

from core.platform.settings import Settings
from jobs.callback_poll import poll_callbacks
from jobs.grace import enforce_grace
from jobs.health import check_health
from jobs.housekeeping import INTERVAL_SECONDS as PRUNE_INTERVAL
from jobs.housekeeping import prune_deliveries
from jobs.images import check_images
from jobs.pool import refill_pool
from jobs.queues import FINISH
from jobs.reconcile import reconcile
from jobs.rollout import advance_rollouts
from jobs.sweeper import sweep

log = logging.getLogger(__name__)

CRON_QUEUE = FINISH
#: Time limit of one run of a task.
JOB_TIMEOUT = 600
RESULT_TTL = 3600


@dataclass(frozen=True)
class Task:
    """One scheduled task."""

    name: str
    func: Callable[[], str]
    interval: int
    doc: str


def tasks(settings: Settings) -> list[Task]:
    """The scheduled tasks with their intervals from the settings."""

    def seconds(value: float) -> int:
        return max(1, round(value))

    return [
        Task(
            "grace",
            enforce_grace,
            seconds(settings.grace_interval_seconds),
            "warn, then deprovision, lapsed subscriptions' servers",
        ),
        Task(
            "reconcile",
            reconcile,
            seconds(settings.reconcile_interval_seconds),
            "Hetzner vs. database vs. queues"
            + (" (applying fixes)" if settings.reconcile_apply else " (report only)"),
        ),
        Task(
            "sweep",
            sweep,
            seconds(settings.sweep_interval_seconds),
            "re-enqueue vanished work, retry killed workers' jobs",
        ),
        Task(
            "health",
            check_health,
            seconds(settings.health_interval_seconds),
            "decide ready servers' health from heartbeats; queue probes and repairs"
            + ("" if settings.repair_enabled else " (repair off)"),
        ),
        Task(
            "rollout",
            advance_rollouts,
            seconds(settings.rollout_interval_seconds),
            "move Rachel8 rollouts on: gates, waves, soaks, halts, rollbacks",
        ),
        Task(
            "images",
            check_images,
            seconds(settings.image_interval_seconds),
            "build the current release's image when it has none; fail stale builds; "
            "delete old images",
        ),
        Task(
            "pool",
            refill_pool,
            seconds(settings.pool_interval_seconds),
            "refill the warm pool to its adaptive size; recycle old, surplus, stuck servers"
            + ("" if settings.pool_enabled else " (disabled: draining)"),
        ),
        Task(
            "prune",
            prune_deliveries,
            PRUNE_INTERVAL,
            "forget webhook deliveries older than RACHEL_DELIVERY_RETENTION",
        ),
        *_baseline_tasks(settings),
    ]


def _baseline_tasks(settings: Settings) -> list[Task]:
    # The benchmarks' baseline (RACHEL_CALLBACK_DISPATCH=poll): see jobs.callback_poll.
    if settings.callback_dispatch != "poll":
        return []
    return [
        Task(
            "callback-poll",
            poll_callbacks,
            max(1, round(settings.callback_poll_interval_seconds)),
            "queue injections of called-back servers (poll mode, the baseline)",
        )
    ]


def build_scheduler(
    connection: redis.Redis, settings: Settings, *, name: str = ""
) -> CronScheduler:
    """An RQ cron scheduler with every task registered."""
    scheduler = CronScheduler(connection=connection, name=name)
    for task in tasks(settings):
        scheduler.register(
            task.func,
            CRON_QUEUE,
            interval=task.interval,
            job_timeout=JOB_TIMEOUT,
            result_ttl=RESULT_TTL,
            # A run that waited two intervals in the queue is dropped: the next is due.
            ttl=task.interval * 2,
            name=f"rachel-cloud:{task.name}",
        )
    return scheduler
