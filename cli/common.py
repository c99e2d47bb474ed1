"""Helpers shared by the CLI commands."""

from __future__ import annotations

import getpass

import click

from cli.runtime import Runtime


def runtime(process_name: str = "cli", *, check_schema: bool = True) -> Runtime:
    """Start this command's runtime (settings, logging, database)."""
    return Runtime.start(process_name, check_schema=check_schema)


def actor(operator: str | None) -> str:
    """The audit trail's name of this operator: `operator:NAME` (default: login name)."""
    name = operator or getpass.getuser() or "unknown"
    return f"operator:{name}"


def _valid_operator(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a name the audit trail would refuse, as a usage error, before any work."""
    from core.domain.lifecycle import validate_actor

    if value is not None:
        try:
            validate_actor(f"operator:{value}")
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return value


operator_option = click.option(
    "--operator",
    default=None,
    callback=_valid_operator,
    help="Name recorded in the audit trail (default: login name).",
)
