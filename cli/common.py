"""Helpers shared by the CLI commands."""

from __future__ import annotations

from cli.runtime import Runtime


def runtime(process_name: str = "cli", *, check_schema: bool = True) -> Runtime:
    """Start this command's runtime (settings, logging, database)."""
    return Runtime.start(process_name, check_schema=check_schema)
