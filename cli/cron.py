"""`rachel-cloud cron`: RQ's cron scheduler with the grace enforcer, reconciler, sweeper and
the health task."""

from __future__ import annotations

import datetime as dt

import click
import redis

from cli.common import runtime

TASK_NAMES = ("grace", "reconcile", "sweep", "health")


@click.command("cron")
@click.option("--list", "list_only", is_flag=True, help="Print the schedule and exit.")
@click.option("--status", is_flag=True, help="Print each task's last run and exit.")
@click.option(
    "--run",
    "run_task",
    type=click.Choice(TASK_NAMES),
    default=None,
    help="Run one task now, in this process, print its summary and exit.",
)
@click.option("--name", default="", help="Scheduler name (default: host:pid:random).")
def cron_command(list_only: bool, status: bool, run_task: str | None, name: str) -> None:
    """Run the scheduler: it enqueues the grace enforcer, the reconciler, the sweeper and
    the health task.

    Intervals are settings (RACHEL_GRACE_INTERVAL, RACHEL_RECONCILE_INTERVAL,
    RACHEL_SWEEP_INTERVAL, RACHEL_HEALTH_INTERVAL); workers run the tasks. Two schedulers are safe:
    each task runs once at a time and its actions are idempotent.
    """
    from jobs.context import JobContext, use_context
    from jobs.cron import CRON_QUEUE, build_scheduler, tasks

    rt = runtime("cron")
    settings = rt.settings
    if list_only:
        for task in tasks(settings):
            click.echo(f"{task.name:<10} every {task.interval:>6}s on {CRON_QUEUE}: {task.doc}")
        return
    try:
        if status:
            _print_status(rt.redis)
            return
        if run_task is not None:
            use_context(JobContext(settings=settings, keyring=rt.keyring, redis=rt.redis))
            func = {task.name: task.func for task in tasks(settings)}[run_task]
            click.echo(func())
            return
        rt.redis.ping()
        scheduler = build_scheduler(rt.redis, settings, name=name)
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from None
    click.echo(
        "cron: "
        + ", ".join(f"{t.name} every {t.interval}s" for t in tasks(settings))
        + f" (queue {CRON_QUEUE}; workers run them)",
        err=True,
    )
    scheduler.start()  # type: ignore[no-untyped-call]  # rq leaves CronScheduler.start unannotated


def _print_status(conn: redis.Redis) -> None:
    from core.platform.runs import read_runs

    for task, stats in read_runs(conn).items():
        if not stats:
            click.echo(f"{task:<10} never ran")
            continue
        when = dt.datetime.fromtimestamp(float(stats["last_run"]), dt.UTC)
        click.echo(
            f"{task:<10} last run {when:%Y-%m-%d %H:%M:%S} UTC "
            f"({stats.get('last_duration', '?')}s, {stats.get('runs', '?')} runs): "
            f"{stats.get('last_summary', '')}"
        )
