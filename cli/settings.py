"""`rachel-cloud settings`: the effective settings, or the documentation of all."""

from __future__ import annotations

import click

from core.platform.settings import Settings, settings_table_markdown


@click.command("settings")
@click.option("--doc", is_flag=True, help="Print every setting, its default and what it does.")
def settings_command(doc: bool) -> None:
    """Show the effective settings (secrets hidden), validating them."""
    if doc:
        click.echo(settings_table_markdown())
        return
    settings = Settings.load()
    width = max(len(name) for name, _ in settings.describe())
    for name, value in settings.describe():
        click.echo(f"{name:<{width}}  {value}")
