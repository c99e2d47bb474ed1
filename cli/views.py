"""Views for operators: `rachel-cloud server show ID` (or `server ID`) and `rachel-cloud jobs`.

What the TUI's server and jobs screens show, for a terminal without the TUI,
a script (`--json`) or a ticket. Nothing here changes anything; the `server`
group also holds the commands that act on a VPS (`cli.server_ops`).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from typing import Any

import click
import redis

from cli.common import runtime
from cli.server_ops import diagnose_command, logs_command, restart_command
from core.domain.fleet import timeline
from core.errors import RachelError
from core.platform.clock import SYSTEM_CLOCK
from core.platform.settings import Settings
from core.platform.settings_parsing import format_duration
from core.security.redaction import redact
from core.store.db import connection
from core.store.models import Customer, Server

#: The phase stamps of a server, in lifecycle order, as shown.
PHASES = (
    ("created", "created_at"),
    ("creating", "creating_at"),
    ("cloud_init", "cloud_init_at"),
    ("injecting_secrets", "injecting_secrets_at"),
    ("ready", "ready_at"),
    ("failed", "failed_at"),
    ("deprovisioning", "deprovisioning_at"),
    ("deleted", "deleted_at"),
)


def _when(value: dt.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC" if value is not None else "-"


def _iso(value: dt.datetime | None) -> str | None:
    return value.replace(tzinfo=dt.UTC).isoformat() if value is not None else None


def server_record(server: Server, customer: Customer) -> dict[str, Any]:
    """A server's operator-facing fields (never a secret, never the callback token)."""
    return {
        "id": server.id,
        "name": server.name,
        "customer": customer.external_id,
        "status": server.status,
        "attempt": server.attempt,
        "provider_id": server.provider_id,
        "ipv4": server.ipv4,
        "ipv6": server.ipv6,
        "location": server.location,
        "server_type": server.server_type,
        "image": server.image,
        "rachel8_commit": server.rachel8_commit,
        "requested_by": server.requested_by,
        "status_changed_at": _iso(server.status_changed_at),
        "deadline_at": _iso(server.deadline_at),
        "retries": server.retries,
        "failed_phase": server.failed_phase,
        "last_error": redact(server.last_error) if server.last_error else None,
        "job_id": server.job_id,
        "provisioning_seconds": server.provisioning_seconds,
        "phases": {name: _iso(getattr(server, column)) for name, column in PHASES},
        "health": server.health,
        "health_reason": redact(server.health_reason) if server.health_reason else None,
        "health_changed_at": _iso(server.health_changed_at),
    }


def last_heartbeat(client: redis.Redis, server_id: int) -> tuple[str | None, str | None]:
    """When the server's latest heartbeat arrived (ISO), or why that is not known."""
    from core.domain.heartbeats import HeartbeatStore

    try:
        latest = HeartbeatStore(client).latest([server_id]).get(server_id)
    except redis.RedisError as exc:
        return None, f"unknown: Redis does not answer ({exc})"
    if latest is None:
        return None, "none since the server's credential was issued"
    at = dt.datetime.fromtimestamp(latest.received_at, dt.UTC)
    return at.isoformat(), None


def _event_record(event: Any) -> dict[str, Any]:
    return {
        "at": _iso(event.at),
        "actor": event.actor,
        "kind": event.kind,
        "from": event.from_status,
        "to": event.to_status,
        "message": redact(event.message),
    }


def _print_server(record: dict[str, Any], sla_seconds: float) -> None:
    rows: list[tuple[str, object]] = [
        ("customer", record["customer"]),
        ("status", f"{record['status']} since {_when_iso(record['status_changed_at'])}"),
        ("attempt", record["attempt"]),
        ("hetzner id", record["provider_id"] or "-"),
        ("addresses", f"{record['ipv4'] or '-'}  {record['ipv6'] or ''}".rstrip()),
        ("where", f"{record['location']} {record['server_type']} {record['image']}"),
        ("rachel8", record["rachel8_commit"] or "-"),
        ("health", f"{record['health']} since {_when_iso(record['health_changed_at'])}"),
        ("requested by", record["requested_by"]),
    ]
    if record["deadline_at"]:
        rows.append(("phase deadline", _when_iso(record["deadline_at"])))
    if record["provisioning_seconds"] is not None:
        took = record["provisioning_seconds"]
        verdict = "within" if took <= sla_seconds else "over"
        rows.append(
            ("provisioning", f"{took:.1f}s ({verdict} the {format_duration(sla_seconds)} SLA)")
        )
    if record["health_reason"]:
        rows.append(("health reason", record["health_reason"]))
    heartbeat = record.get("last_heartbeat_at")
    rows.append(("last heartbeat", _when_iso(heartbeat) if heartbeat else record["heartbeat_note"]))
    if record["failed_phase"]:
        rows.append(("failed in", record["failed_phase"]))
    if record["last_error"]:
        rows.append(("last error", record["last_error"]))
    if record["job_id"]:
        rows.append(("job", record["job_id"]))
    for name, at in record["phases"].items():
        if at:
            rows.append((f"  {name}", _when_iso(at)))
    click.echo(f"server {record['id']} ({record['name'] or 'no name yet'})")
    for label, value in rows:
        click.echo(f"  {label:<16} {value}")


def _when_iso(text: str | None) -> str:
    return _when(dt.datetime.fromisoformat(text)) if text else "-"


class ServerGroup(click.Group):
    """`rachel-cloud server ID` is `rachel-cloud server show ID`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0].isdigit():
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group("server", cls=ServerGroup)
def server_group() -> None:
    """One server: its details, health and timeline; its VPS's logs, a restart, a diagnosis.

    `rachel-cloud server ID` is short for `rachel-cloud server show ID`.
    """


server_group.add_command(logs_command)
server_group.add_command(restart_command)
server_group.add_command(diagnose_command)


@server_group.command("show")
@click.argument("server_id", type=int)
@click.option("--events", is_flag=True, help="Also print the server's timeline, oldest first.")
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object (events included with --events)."
)
def show_command(server_id: int, events: bool, as_json: bool) -> None:
    """Show SERVER_ID: status, health, last heartbeat, addresses, phase times, last error
    (and --events)."""
    rt = runtime("cli")
    with connection():
        found = Server.select(Server, Customer).join(Customer).where(Server.id == server_id).first()
        if found is None:
            raise click.ClickException(f"server {server_id} does not exist")
        record = server_record(found, found.customer)
        history = [_event_record(e) for e in timeline(server_id)] if events else []
    try:
        client = rt.redis
    except RachelError as exc:
        record["last_heartbeat_at"], record["heartbeat_note"] = None, f"unknown: {exc}"
    else:
        record["last_heartbeat_at"], record["heartbeat_note"] = last_heartbeat(client, server_id)
    if as_json:
        if events:
            record["events"] = history
        click.echo(json.dumps(record, indent=2))
        return
    _print_server(record, rt.settings.sla_seconds)
    if events:
        click.echo("events:")
        for event in history:
            change = f"{event['from'] or '-'} -> {event['to']}" if event["to"] else event["kind"]
            click.echo(
                f"  {_when_iso(event['at'])}  {event['actor']:<18} {change:<32} {event['message']}"
            )
        if not history:
            click.echo("  (none)")


def _jobs_data(conn: redis.Redis, settings: Settings) -> dict[str, Any]:
    from jobs import inspect

    return {
        "queues": [asdict(q) for q in inspect.queue_infos(conn)],
        "workers": [asdict(w) for w in inspect.workers(conn)],
        "started": [asdict(j) for j in inspect.started_jobs(conn)],
        "finished": [asdict(j) for j in inspect.finished_jobs(conn)],
        "failed": [asdict(j) for j in inspect.failed_jobs(conn)],
        "cron": [asdict(c) for c in inspect.cron_tasks(conn, settings, SYSTEM_CLOCK.now())],
    }


def _print_jobs(data: dict[str, Any], tracebacks: bool) -> None:
    click.echo(f"{'QUEUE':<14} {'QUEUED':>7} {'STARTED':>8} {'SCHEDULED':>10} {'FAILED':>7}")
    for q in data["queues"]:
        click.echo(
            f"{q['name']:<14} {q['queued']:>7} {q['started']:>8} {q['scheduled']:>10} "
            f"{q['failed']:>7}"
        )
    workers = data["workers"]
    click.echo(f"\nworkers: {len(workers)}" + ("  (none: no job will run)" if not workers else ""))
    for w in workers:
        click.echo(
            f"  {w['name']:<32} {w['state']:<10} {','.join(w['queues'])}  "
            f"heartbeat {_when(w['last_heartbeat'])}  ok {w['successful']} failed {w['failed']}"
            + (f"  running {w['current_job']}" if w["current_job"] else "")
        )
    _print_recent("started jobs", data["started"], "started_at")
    _print_recent("finished jobs", data["finished"], "ended_at")
    failed = data["failed"]
    click.echo(f"\nfailed jobs: {len(failed)}")
    for j in failed:
        server = f"server {j['server_id']}" if j["server_id"] is not None else "-"
        last = (j["traceback"] or "").strip().splitlines()
        click.echo(
            f"  {j['id']:<36} {j['queue']:<12} {server:<12} {_when(j['ended_at'])}  "
            f"{last[-1] if last else ''}"
        )
        if tracebacks and j["traceback"]:
            click.echo("    " + j["traceback"].rstrip().replace("\n", "\n    "))
    click.echo("\ncron:")
    for task in data["cron"]:
        every = f"every {format_duration(task['interval'])}"
        if task["last_run"] is None:
            click.echo(f"  {task['task']:<14} {every:<10} never ran, due")
            continue
        took = format_duration(round(task["duration"], 3))
        upcoming = "due" if task["due"] else _when(task["next_run"])
        click.echo(
            f"  {task['task']:<14} {every:<10} last run {_when(task['last_run'])} "
            f"(took {took}, {task['runs']} runs), next {upcoming}: {task['result']}"
        )


def _print_recent(title: str, jobs: list[dict[str, Any]], at: str) -> None:
    click.echo(f"\n{title}: {len(jobs)}" + (" (the newest)" if jobs else ""))
    for j in jobs:
        click.echo(
            f"  {j['id']:<36} {j['queue']:<14} {j['step'] or '-':<16} {j['worker'] or '-':<24} "
            f"{_when(j[at])}  {j['result'] or ''}"
        )


@click.command("jobs")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object: queues, workers, started, finished, failed, cron.",
)
@click.option("--tracebacks", is_flag=True, help="Print failed jobs' (redacted) tracebacks.")
def jobs_command(as_json: bool, tracebacks: bool) -> None:
    """Show the queues, workers (heartbeat, counts), started, finished and failed jobs, cron runs.

    The cron tasks show their last run, its result, and when the next is due.
    """
    rt = runtime("cli")
    try:
        data = _jobs_data(rt.redis, rt.settings)
    except redis.RedisError as exc:
        raise click.ClickException(f"cannot reach Redis: {exc}") from None
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    _print_jobs(data, tracebacks)
