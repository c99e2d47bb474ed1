"""`rachel-cloud release add|list`: the Rachel8 commits the fleet may run."""

from __future__ import annotations

import json

import click

from cli.common import actor, operator_option, runtime


@click.group("release")
def release_group() -> None:
    """Rachel8 releases: the commits the fleet may run, and its current one."""


@release_group.command("add")
@click.argument("commit")
@click.option("--notes", default="", help="What the release brings (shown by `release list`).")
@operator_option
def add_command(commit: str, notes: str, operator: str | None) -> None:
    """Record COMMIT (a full 40-hex-digit commit id) as a release the fleet may run.

    It changes no server: `rachel-cloud rollout start COMMIT` rolls it out.
    """
    from core.domain.releases import add_release, current, short

    rt = runtime("cli")
    current(rt.settings.rachel8_commit)  # a first release is seeded before this one
    release = add_release(commit, notes, actor(operator))
    click.echo(
        f"release {short(release.commit)} added; roll it out with "
        f"`rachel-cloud rollout start {short(release.commit)}`"
    )


@release_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per release.")
def list_command(as_json: bool) -> None:
    """Every release, newest first: the current one (what new servers get) marked `*`."""
    from core.domain.releases import list_releases

    rt = runtime("cli")
    rows = list_releases(rt.settings.rachel8_commit)
    if as_json:
        for row in rows:
            data = {**row.__dict__, "added_at": row.added_at.isoformat()}
            click.echo(json.dumps(data))
        return
    click.echo(f"  {'COMMIT':<40}  {'SERVERS':>7}  {'ADDED':<16}  {'BY':<20}  NOTES")
    for row in rows:
        mark = "*" if row.current else " "
        click.echo(
            f"{mark} {row.commit:<40}  {row.servers:>7}  {row.added_at:%Y-%m-%d %H:%M}  "
            f"{row.added_by:<20}  {row.notes}"
        )
    click.echo("* the fleet's current release: new servers are created with it")
