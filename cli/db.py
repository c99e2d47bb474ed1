"""`rachel-cloud db`: schema status and upgrades."""

from __future__ import annotations

import click

from cli.common import runtime
from core.store import migrations
from core.store.db import connection, describe_url


@click.group()
def db() -> None:
    """Database schema: status and upgrade."""


@db.command()
def upgrade() -> None:
    """Create the schema, or apply pending migrations (safe to run repeatedly)."""
    rt = runtime("db", check_schema=False)
    with connection():
        before = migrations.database_version()
        applied = migrations.upgrade()
    where = describe_url(rt.settings.effective_database_url)
    if not applied:
        click.echo(f"{where}: already at schema version {before}, nothing to do")
    elif before == 0:
        click.echo(f"{where}: created schema version {applied[-1]}")
    else:
        click.echo(
            f"{where}: upgraded from version {before} to {applied[-1]} "
            f"(applied {', '.join(map(str, applied))})"
        )


@db.command()
def status() -> None:
    """Show the database's schema version and whether it matches this release."""
    rt = runtime("db", check_schema=False)
    with connection():
        found = migrations.database_version()
    where = describe_url(rt.settings.effective_database_url)
    state = (
        "up to date" if found == migrations.SCHEMA_VERSION else "needs `rachel-cloud db upgrade`"
    )
    click.echo(
        f"{where}: schema version {found}, release expects {migrations.SCHEMA_VERSION} ({state})"
    )
    if found != migrations.SCHEMA_VERSION:
        raise SystemExit(1)
