"""`rachel-cloud redis`: the embedded Redis server of the data directory."""

from __future__ import annotations

import click

from cli.embedded_redis import embedded_for
from core.platform.redis import describe_url
from core.platform.settings import Settings


@click.group("redis")
def redis_group() -> None:
    """The embedded Redis server (used when REDIS_URL is not set)."""


def _embedded(settings: Settings) -> None:
    if settings.redis_url:
        raise click.ClickException(
            f"REDIS_URL is set ({describe_url(settings.redis_url)}): there is no embedded server"
        )


@redis_group.command()
def start() -> None:
    """Start the embedded server (no-op when it is running); print its URL."""
    settings = Settings.load()
    _embedded(settings)
    click.echo(embedded_for(settings).ensure_running())


@redis_group.command()
def stop() -> None:
    """Stop the embedded server, whoever started it."""
    settings = Settings.load()
    _embedded(settings)
    stopped = embedded_for(settings).stop()
    click.echo("stopped" if stopped else "not running")


@redis_group.command()
def status() -> None:
    """Say whether the embedded server is running."""
    settings = Settings.load()
    _embedded(settings)
    server = embedded_for(settings)
    if server.answers():
        click.echo(f"running at {server.url} (pid {server.pid()})")
    else:
        click.echo("not running")
        raise SystemExit(1)
