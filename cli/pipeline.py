"""Pipeline commands: retry, deprovision, fleet, worker, user-data (deploy: cli/deploy.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import click

from cli.common import actor as _actor
from cli.common import operator_option, runtime
from core.cloud.cloudinit import (
    SAMPLE_TOKEN,
    CloudConfigInput,
    Rachel8Install,
    callback_url,
    render,
)
from core.domain.fleet import fleet_rows
from core.platform.settings import Settings
from core.security.crypto import generate_ssh_keypair
from core.store.db import connection
from core.store.models import Server


@click.command("retry")
@click.argument("server_id", type=int)
@operator_option
def retry_command(server_id: int, operator: str | None) -> None:
    """Retry a failed SERVER from the phase that failed."""
    from jobs.operator import retry

    rt = runtime("cli")
    click.echo(retry(rt.redis, rt.settings, server_id, _actor(operator)).message)


@click.command("deprovision")
@click.argument("server_id", type=int)
@click.option("--force", is_flag=True, help="Also stop a server that is still provisioning.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@operator_option
def deprovision_command(server_id: int, force: bool, yes: bool, operator: str | None) -> None:
    """Delete SERVER's VPS (ready or failed servers; --force for any state)."""
    from jobs.operator import deprovision

    rt = runtime("cli")
    with connection():
        server = Server.get_or_none(Server.id == server_id)
    if server is not None and not yes:
        click.confirm(
            f"Destroy server {server_id} ({server.name}, {server.status}, "
            f"{server.ipv4 or 'no address'})?",
            abort=True,
        )
    outcome = deprovision(
        rt.redis,
        server_id,
        _actor(operator),
        force=force,
        reason=f"deprovision requested{' (forced)' if force else ''}",
    )
    click.echo(outcome.message)


@click.command("fleet")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per server, one per line.")
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted servers.")
def fleet_command(as_json: bool, include_deleted: bool) -> None:
    """List the servers and where each is in its lifecycle."""
    runtime("cli")
    with connection():
        rows = fleet_rows(include_deleted=include_deleted)
    if as_json:
        # JSON lines: `jq`, `grep` and `wc -l` work on it, and a large fleet streams.
        for row in rows:
            click.echo(json.dumps(row.as_json()))
        return
    header = (
        f"{'ID':>6}  {'CUSTOMER':<18} {'STATUS':<18} {'HEALTH':<10} {'IPV4':<16} "
        f"{'TIME':>8}  LAST ERROR / HEALTH REASON"
    )
    click.echo(header)
    for row in rows:
        took = row.provisioning_seconds if row.status == "ready" else row.seconds_in_status
        # A reconciler finding beside the status: a lost VPS must not read as plain "ready".
        status = f"{row.status} !{row.drift}" if row.drift else row.status
        # Health is a ready server's; an unhealthy one says why where an error would.
        health = row.health if row.status == "ready" else "-"
        why = row.last_error or (row.health_reason if health in ("unhealthy", "degraded") else "")
        click.echo(
            f"{row.id:>6}  {row.customer[:18]:<18} {status:<18} {health:<10} "
            f"{(row.ipv4 or '-'):<16} {took or 0:>7.1f}s  {(why or '')[:60]}"
        )
    if not rows:
        click.echo("(no servers)")


@click.command("worker")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option("--name", default=None, help="Worker name (default: RQ's).")
@click.option(
    "--class",
    "worker_class",
    type=click.Choice(["fork", "simple"]),
    default=None,
    help="Override RACHEL_WORKER_CLASS.",
)
def worker_command(burst: bool, name: str | None, worker_class: str | None) -> None:
    """Run an RQ worker on the rachel-cloud queues (with the scheduler)."""
    from jobs.context import JobContext
    from jobs.worker import run

    rt = runtime("worker")
    run(
        JobContext(settings=rt.settings, keyring=rt.keyring, redis=rt.redis),
        burst=burst,
        name=name,
        worker_class=worker_class,
    )


@click.command("user-data")
@click.argument("server_id", type=int, required=False)
def user_data_command(server_id: int | None) -> None:
    """Print the cloud-config of SERVER_ID, or of a sample server.

    The one-time callback token is never printed (it is only stored hashed);
    a placeholder stands in its place. No customer secret is ever in user data.
    The sample needs nothing but the settings: no database, no data directory.
    """
    if server_id is None:
        settings = Settings.load()
        key = generate_ssh_keypair("sample").public_openssh
        hostname, url = f"{settings.name_prefix}-sample", callback_url(settings.public_url, "ID")
        install = Rachel8Install.from_settings(settings)
    else:
        settings = runtime("cli").settings
        with connection():
            server = Server.get_or_none(Server.id == server_id)
        if server is None:
            raise click.ClickException(f"server {server_id} does not exist")
        if not server.ssh_public_key:
            raise click.ClickException(
                f"server {server_id} has no key yet (it is "
                f"{server.status}; user data is made when it is created)"
            )
        key, hostname = server.ssh_public_key, server.name or f"server-{server_id}"
        url = callback_url(settings.public_url, server_id)
        install = Rachel8Install.from_settings(settings)
        if server.rachel8_commit:  # the commit it was created with, not today's setting
            install = replace(install, commit=server.rachel8_commit)
    click.echo(
        render(
            CloudConfigInput(
                hostname=hostname,
                authorized_key=key,
                callback_url=url,
                callback_token=SAMPLE_TOKEN,
                install=install,
                heartbeat_interval=settings.heartbeat_interval_seconds,
            )
        ),
        nl=False,
    )
