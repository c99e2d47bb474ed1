"""`rachel-cloud tui`: the operator's live fleet view (composition of tui and jobs)."""

from __future__ import annotations

import functools
import getpass
from collections.abc import Callable
from typing import TYPE_CHECKING

import click
import redis

from cli.common import operator_option
from core.platform.clock import Clock
from core.platform.settings import Settings

if TYPE_CHECKING:
    from jobs.context import JobContext
    from tui.backend import Operations


def job_context(conn: redis.Redis, settings: Settings) -> Callable[[Clock], JobContext]:
    """The `JobContext` the pool functions take, at a clock (the key ring read once, when
    first needed: a refill seals the keys of the servers it creates)."""
    from core.store.vault import load_keyring
    from jobs.context import JobContext

    ring = functools.cache(lambda: load_keyring(settings))
    return lambda clock: JobContext(settings=settings, keyring=ring(), redis=conn, clock=clock)


def refill_pool(context: JobContext) -> str:
    """One refill pass now, as `rachel-cloud pool refill` runs it: what it did, one line each."""
    from jobs.pool import refill_now

    summary = refill_now(context)  # RefillRunning: the TUI says it was refused, and why
    return "\n".join([*summary.details, summary.line()])


def operations(conn: redis.Redis, settings: Settings) -> Operations:
    """The TUI's `Operations`, made of the same `jobs` functions the CLI uses."""
    from core.domain.image_store import listing
    from core.domain.releases import list_releases
    from jobs import inspect, operator, pool, rollout_operator
    from tui.backend import Operations

    context = job_context(conn, settings)
    return Operations(
        retry=lambda sid, actor: operator.retry(conn, settings, sid, actor).message,
        reinject=lambda sid, actor: operator.reinject(conn, sid, actor).message,
        deprovision=lambda sid, actor, reason: (
            operator.deprovision(conn, sid, actor, force=True, reason=reason).message
        ),
        queues=lambda: inspect.queue_infos(conn),
        workers=lambda: inspect.workers(conn),
        failed_jobs=lambda: inspect.failed_jobs(conn),
        started_jobs=lambda: inspect.started_jobs(conn),
        finished_jobs=lambda: inspect.finished_jobs(conn),
        cron_tasks=lambda now: inspect.cron_tasks(conn, settings, now),
        requeue=lambda jid: inspect.requeue(conn, jid),
        server_jobs=lambda sid, current: inspect.server_jobs(conn, sid, current),
        rollout_action=lambda action, actor, reason: (
            rollout_operator.act(conn, action, actor, reason).message
        ),
        releases=lambda: list_releases(settings.rachel8_commit),
        pool_places=lambda clock: pool.status(context(clock)) if settings.pool_enabled else None,
        images=lambda: listing(settings.rachel8_commit, include_deleted=False),
        pool_refill=lambda clock: refill_pool(context(clock)),
    )


def operator_name(name: str | None) -> str:
    """The name written into the Events this operator causes (default: login name)."""
    if name:
        return name
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


@click.command("tui")
@click.option("--readonly", is_flag=True, help="Watch only: every action is disabled.")
@operator_option
def tui_command(readonly: bool, operator: str | None) -> None:
    """Open the live fleet view (k9s-style; press ? for keys, ctrl+p for every action)."""
    from cli.common import runtime
    from core.domain.lifecycle import validate_actor

    validate_actor(f"operator:{operator_name(operator)}")  # bad input fails before start-up
    rt = runtime("tui")
    run_tui(rt.settings, operator, readonly=readonly)


def run_tui(settings: Settings, operator: str | None, *, readonly: bool) -> None:
    """Run the TUI in this process (its database and logging already set up)."""
    from cli.embedded_redis import redis_url
    from core.domain.lifecycle import validate_actor
    from core.platform.redis import connect
    from tui.app import RachelApp
    from tui.backend import Backend

    actor = validate_actor(f"operator:{operator_name(operator)}")
    conn = connect(
        redis_url(settings), check=False
    )  # the TUI starts, and shows a banner, without Redis
    backend = Backend(
        conn,
        operations(conn, settings),
        settings.sla_seconds,
        actor,
        prices=settings.server_prices,
        snapshot_price=settings.snapshot_price_gb_month,
    )
    RachelApp(backend, readonly=readonly).run()
