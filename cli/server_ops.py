"""`rachel-cloud server logs|restart|diagnose ID`: an operator's look at (and hand on) a VPS.

Over SSH with the server's pinned host key (`core.domain.vps_requests`), on
ready servers only. Every output is redacted, the customer's own secrets
included. A server that cannot be asked (unknown, not ready, unreachable)
is an `error: ...` and exit code 2, like every other refusal of the CLI.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import click

from cli.common import actor, operator_option, runtime

if TYPE_CHECKING:
    from core.cloud.vps_ops import Diagnosis

#: Journal lines shown by default (logs, diagnose).
DEFAULT_LINES = 40
#: `core.cloud.vps_ops.MAX_LOG_LINES`, not imported here: paramiko takes a fifth of a
#: second to load, and every `rachel-cloud server ...` and `--help` would pay it.
MAX_LOG_LINES = 500


lines_option = click.option(
    "-n",
    "--lines",
    type=click.IntRange(1, MAX_LOG_LINES),
    default=DEFAULT_LINES,
    show_default=True,
    help=f"How many of the journal's last lines (1 to {MAX_LOG_LINES}).",
)


@click.command("logs")
@click.argument("server_id", type=int)
@lines_option
def logs_command(server_id: int, lines: int) -> None:
    """Print the last lines of Rachel8's journal on SERVER_ID's VPS (redacted)."""
    from core.domain import vps_requests

    rt = runtime("cli")
    for line in vps_requests.logs(server_id, lines, rt.keyring, rt.settings):
        click.echo(line)


@click.command("restart")
@click.argument("server_id", type=int)
@operator_option
def restart_command(server_id: int, operator: str | None) -> None:
    """Restart Rachel8 on SERVER_ID's VPS and show the unit's state (on its timeline).

    Exits 2 when the VPS cannot be reached, or when Rachel8 is not running
    right after the restart.
    """
    from core.domain import vps_requests
    from core.domain.events import publish

    rt = runtime("cli")
    who = actor(operator)
    state = vps_requests.restart(
        server_id,
        rt.keyring,
        rt.settings,
        actor=who,
        publish=lambda payload: publish(rt.redis, payload),
    )
    if not state.running:
        raise click.ClickException(
            f"server {server_id}: restarted, but Rachel8 is {state.describe()}; see "
            f"`rachel-cloud server logs {server_id}` and `rachel-cloud server diagnose {server_id}`"
        )
    click.echo(f"server {server_id}: Rachel8 restarted: {state.describe()}")


@click.command("diagnose")
@click.argument("server_id", type=int)
@lines_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def diagnose_command(server_id: int, lines: int, as_json: bool) -> None:
    """Diagnose SERVER_ID's VPS: Rachel8's unit and journal, disk, memory, uptime, the
    commit and versions installed, the health agent's timer."""
    from core.domain import vps_requests
    from core.store.db import connection
    from core.store.models import Server

    rt = runtime("cli")
    found = vps_requests.diagnose(server_id, rt.keyring, rt.settings, journal_lines=lines)
    with connection():
        server = Server.get_by_id(server_id)
    record = diagnosis_record(found)
    if as_json:
        click.echo(json.dumps({"server_id": server_id, **record}, indent=2))
        return
    click.echo(f"server {server_id} ({server.name or 'no name'}) at {server.ipv4}")
    for label, value in diagnosis_rows(found, server.rachel8_commit):
        click.echo(f"  {label:<14} {value}")
    if found.problems:
        click.echo("  problems (not read):")
        for problem in found.problems:
            click.echo(f"    - {problem}")
    click.echo(f"  journal (last {len(found.journal)} lines):")
    for line in found.journal or ["(empty)"]:
        click.echo(f"    {line}")


def diagnosis_record(found: Diagnosis) -> dict[str, Any]:
    """A diagnosis as JSON-ready data."""
    record = asdict(found)
    if found.service is not None:
        record["service"]["running"] = found.service.running
    return record


def _bytes(value: int | None) -> str:
    if value is None:
        return "?"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.1f} {unit}" if unit != "B" else f"{value} B"
        size /= 1024
    return f"{size:.1f} TiB"


def _share(part: int | None, whole: int | None, verb: str) -> str:
    if part is None or whole is None:
        return "unknown (not read)"
    percent = f" ({100 * part / whole:.0f}%)" if whole else ""
    return f"{_bytes(part)} {verb} of {_bytes(whole)}{percent}"


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "unknown (not read)"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h {minutes}m" if days else f"{hours}h {minutes}m"


def diagnosis_rows(found: Diagnosis, expected_commit: str | None) -> list[tuple[str, str]]:
    """The diagnosis as labelled lines for a terminal."""
    commit = found.commit or "unknown (not read)"
    if found.commit and expected_commit and found.commit != expected_commit:
        commit += f" (the server should run {expected_commit})"
    versions = ", ".join(f"{name} {version}" for name, version in sorted(found.versions.items()))
    return [
        ("Rachel8", found.service.describe() if found.service else "unknown (not read)"),
        ("commit", commit),
        ("versions", versions or "unknown (not read)"),
        ("agent timer", found.agent_timer or "unknown (not read)"),
        ("disk", _share(found.disk_free_bytes, found.disk_total_bytes, "free")),
        ("memory", _share(found.memory_available_bytes, found.memory_total_bytes, "available")),
        ("uptime", _uptime(found.uptime_seconds)),
    ]
