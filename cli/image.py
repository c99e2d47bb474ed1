"""`rachel-cloud image build|list|prune`: snapshot images of the fleet's release."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from cli.common import actor, operator_option, runtime

if TYPE_CHECKING:
    from jobs.context import JobContext


@click.group("image")
def image_group() -> None:
    """Snapshot images: new servers start from the current release's image."""


def _context() -> JobContext:
    from jobs.context import JobContext, use_context

    rt = runtime("cli")
    ctx = JobContext(settings=rt.settings, keyring=rt.keyring, redis=rt.redis)
    use_context(ctx)
    return ctx


@image_group.command("build")
@operator_option
def build_command(operator: str | None) -> None:
    """Build an image of the fleet's current release now, here, showing its progress.

    A builder server installs the release from the stock image (RACHEL_IMAGE),
    calls back (the web app must be reachable at RACHEL_PUBLIC_URL), is
    cleaned, powered off and snapshotted, then deleted, whatever happens.
    """
    from jobs.image_build import run_build
    from jobs.images import request_build

    ctx = _context()
    row = request_build(ctx, actor=actor(operator), why="asked for by an operator")
    click.echo(
        f"image {row.id}: building Rachel8 {row.commit} (deadline {row.deadline_at:%H:%M:%S} UTC)"
    )
    done = run_build(ctx, row.id, progress=lambda line: click.echo(f"image {row.id}: {line}"))
    click.echo(
        f"image {done.id} available: Hetzner snapshot {done.provider_image_id} "
        f"({done.image_size or '?'} GB); new servers of {done.commit[:12]} start from it"
    )


@image_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per image.")
@click.option("--all", "show_all", is_flag=True, help="Include deleted images.")
def list_command(as_json: bool, show_all: bool) -> None:
    """The images, newest first; `*` marks the one new servers start from."""
    from core.domain.image_store import listing

    rt = runtime("cli")
    rows, chosen = listing(rt.settings.rachel8_commit, include_deleted=show_all)
    if as_json:
        for row in rows:
            click.echo(json.dumps({**row, "current": row["id"] == chosen}, default=str))
        return
    click.echo(f"  {'ID':>4}  {'STATE':<9}  {'SNAPSHOT':>9}  {'COMMIT':<12}  {'BUN':<8}  "
               f"{'CLAUDE':<8}  {'CREATED':<16}  REASON")  # fmt: skip
    for row in rows:
        mark = "*" if row["id"] == chosen else " "
        click.echo(
            f"{mark} {row['id']:>4}  {row['state']:<9}  {row['provider_image_id'] or '-':>9}  "
            f"{row['commit'][:12]:<12}  {row['bun_version']:<8}  {row['claude_code_version']:<8}  "
            f"{row['created_at']:%Y-%m-%d %H:%M}  {row['reason'] or ''}"
        )
    if chosen is None:
        click.echo("no image of the current release: new servers install on the stock image")


@image_group.command("check")
def check_command() -> None:
    """One pass of the scheduled image check: fail stale builds, queue a build of the
    current release if it has no image, delete images beyond RACHEL_IMAGE_KEEP."""
    from jobs.images import check
    from jobs.taskrun import task_run

    ctx = _context()
    with task_run(ctx.redis, "images") as summary:
        if summary is None:
            raise click.ClickException("an image check is running (rachel-cloud cron); try again")
        check(ctx, summary)
    for line in summary.details:
        click.echo(line)
    click.echo(summary.line())
