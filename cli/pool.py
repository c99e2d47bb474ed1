"""`rachel-cloud pool list|refill`: the warm pool of servers made ahead."""

from __future__ import annotations

import json

import click

from cli.common import runtime


@click.group("pool")
def pool_group() -> None:
    """The warm pool: servers made ahead that deploys claim (RACHEL_POOL)."""


@pool_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per pool server.")
@click.option("--all", "show_all", is_flag=True, help="Include deleted pool servers.")
def list_command(as_json: bool, show_all: bool) -> None:
    """The pool's servers, newest first, and what the idle ones cost (RACHEL_PRICES)."""
    from core.domain.costs import pool_idle_cost
    from core.domain.pool import PoolState
    from core.domain.pool_store import view
    from core.store.db import connection
    from core.store.models import PoolServer
    from jobs.context import JobContext
    from jobs.pool import status

    rt = runtime("cli")
    ctx = JobContext(settings=rt.settings, keyring=rt.keyring, redis=rt.redis)
    fields = ("id", "state", "location", "server_type", "commit", "provider_id", "name",
              "server_id", "created_at", "warm_at", "reason")  # fmt: skip
    with connection():
        query = PoolServer.select().order_by(PoolServer.id.desc())
        if not show_all:
            query = query.where(PoolServer.state != PoolState.DELETED.value)
        rows = list(query)
    if as_json:
        for row in rows:
            click.echo(json.dumps({name: getattr(row, name) for name in fields}, default=str))
        return
    click.echo(f"  {'ID':>4}  {'STATE':<9}  {'PLACE':<12}  {'VPS':>9}  {'COMMIT':<12}  "
               f"{'SERVER':>6}  {'CREATED':<16}  REASON")  # fmt: skip
    for row in rows:
        click.echo(
            f"  {row.id:>4}  {row.state:<9}  {row.location + '/' + row.server_type:<12}  "
            f"{row.provider_id or '-':>9}  {row.commit[:12]:<12}  {row.server_id or '-':>6}  "
            f"{row.created_at:%Y-%m-%d %H:%M}  {row.reason or ''}"
        )
    if rt.settings.pool_enabled:
        for place in status(ctx):
            click.echo(f"{place.location}/{place.server_type}: {place.warm} warm, {place.making} "
                       f"being made; target {place.target} ({place.size.minimum}.."
                       f"{place.size.maximum})")  # fmt: skip
    else:
        click.echo("the pool is off (RACHEL_POOL=false): it holds nothing and drains")
    idle = pool_idle_cost([view(row) for row in rows], rt.settings.server_prices)
    unpriced = f" ({idle.unpriced} unpriced: see RACHEL_PRICES)" if idle.unpriced else ""
    click.echo(f"idle: {idle.servers} billed, EUR {idle.per_hour:.3f}/h, "
               f"EUR {idle.per_month:.2f}/month{unpriced}")  # fmt: skip


@pool_group.command("refill")
def refill_command() -> None:
    """One pass of the scheduled refill: recycle old, surplus and stuck pool servers
    (all of them when RACHEL_POOL is off), create what the pool lacks."""
    from jobs.context import JobContext, use_context
    from jobs.pool import refill_now

    rt = runtime("cli")
    ctx = JobContext(settings=rt.settings, keyring=rt.keyring, redis=rt.redis)
    use_context(ctx)
    summary = refill_now(ctx)  # RefillRunning, a RachelError: main prints why, fails
    for line in summary.details:
        click.echo(line)
    click.echo(summary.line())
