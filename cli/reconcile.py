"""`rachel-cloud reconcile`: compare Hetzner, the database and the queues; fix with --apply."""

from __future__ import annotations

import json

import click
import redis

from cli.common import runtime
from core.domain.reconcile import Fix, Kind, Report


def _print_report(report: Report, env: str) -> None:
    click.echo(
        f"reconcile at {report.at:%Y-%m-%d %H:%M:%S} UTC: {report.provider_servers} VPS on "
        f"Hetzner labelled managed for {env!r}, {report.db_servers} servers in the database"
    )
    if not report.findings:
        click.echo("no drift: Hetzner, the database and the job queues agree")
        return
    click.echo(f"{'KIND':<7} {'SERVER':>7} {'HETZNER':>10} {'STATUS':<18} {'FIX':<12} REASON")
    for f in report.findings:
        click.echo(
            f"{f.kind.value:<7} {f.server_id if f.server_id is not None else '-':>7} "
            f"{f.provider_id if f.provider_id is not None else '-':>10} "
            f"{f.status or '-':<18} {f.fix.value:<12} {f.reason}"
        )
    counts = ", ".join(f"{kind.value} {len(report.of(kind))}" for kind in Kind if report.of(kind))
    click.echo(f"{len(report.findings)} findings: {counts}")


@click.command("reconcile")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--apply",
    is_flag=True,
    help="Fix what is found: delete orphans older than RACHEL_ORPHAN_MIN_AGE, fail lost "
    "servers, fail or re-enqueue stuck ones.",
)
def reconcile_command(as_json: bool, apply: bool) -> None:
    """Report drift between Hetzner, the database and the job queues (report only by default).

    Orphans are VPSs with our labels that no live server accounts for; lost
    servers are live in the database but gone from Hetzner; stuck servers are
    past their phase deadline with no job. Servers without our labels are
    never listed, never touched.
    """
    from jobs.context import JobContext, use_context
    from jobs.reconcile import run
    from jobs.taskrun import task_run

    rt = runtime("cli")
    ctx = JobContext(settings=rt.settings, keyring=rt.keyring, redis=rt.redis)
    use_context(ctx)
    try:
        with task_run(ctx.redis, "reconcile") as summary:
            if summary is None:
                raise click.ClickException(
                    "a reconcile run is in progress (rachel-cloud cron); try again in a moment"
                )
            report = run(ctx, apply=apply, summary=summary)
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from None
    if as_json:
        data = report.as_dict()
        data["applied"] = apply
        data["actions"] = dict(summary.acted)
        data["errors"] = summary.errors
        click.echo(json.dumps(data, indent=2, default=str))
        return
    _print_report(report, rt.settings.name_prefix)
    fixable = [f for f in report.findings if f.fix != Fix.NONE]
    if apply:
        click.echo(f"applied: {summary.line()}")
    elif fixable:
        click.echo(f"report only: {len(fixable)} can be fixed with --apply")
    if summary.errors:
        raise click.exceptions.Exit(1)
