"""`rachel-cloud health`: the fleet's health, the herd guard, pausing automatic repair."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
import redis

from cli.common import actor, operator_option, runtime


@click.group("health")
def health_group() -> None:
    """Fleet health: servers by state, the herd guard, automatic repair."""


#: How many of the fleet's own Events (kind `herd`) `health status` shows.
RECENT_FLEET_EVENTS = 5


def _status(client: redis.Redis, now: datetime) -> dict[str, Any]:
    import peewee

    from core.domain.health import HEALTH_STATES
    from core.domain.herd import HerdStore
    from core.store.db import connection
    from core.store.models import Event, Server

    with connection():
        counts = dict.fromkeys(HEALTH_STATES, 0)
        query: Any = (
            Server.select(Server.health, peewee.fn.COUNT(Server.id))
            .where(Server.status == "ready")
            .group_by(Server.health)
            .tuples()
        )
        for state, count in query:
            counts[state] = int(count)
        breakers: Any = (
            Server.select(Server.id, Server.name, Server.breaker_until, Server.health_reason)
            .where((Server.status == "ready") & (Server.breaker_until > now))
            .order_by(Server.breaker_until)
            .tuples()
        )
        open_breakers = [
            {"server_id": i, "name": name, "until": until.isoformat(), "reason": reason}
            for i, name, until, reason in breakers
        ]
        # The fleet's own timeline: herd guard trips and clears, pauses and resumes.
        fleet_events: Any = (
            Event.select(Event.at, Event.actor, Event.message)
            .where(Event.server.is_null() & (Event.kind == "herd"))
            .order_by(Event.id.desc())
            .limit(RECENT_FLEET_EVENTS)
            .tuples()
        )
        recent = [
            {"at": at.isoformat(), "actor": who, "message": message}
            for at, who, message in reversed(list(fleet_events))
        ]
    herd, pause = HerdStore(client).read()
    return {
        "at": now.isoformat(),
        "recent_fleet_events": recent,
        "health": {str(k): v for k, v in counts.items()},
        "herd_guard": {
            "tripped": herd.tripped,
            "tripped_at": herd.tripped_at.isoformat() if herd.tripped_at else None,
            "reason": herd.reason if herd.tripped else None,
            "resumed_at": herd.resumed_at.isoformat() if herd.resumed_at else None,
            "resumed_by": herd.resumed_by,
        },
        "paused": None
        if pause is None
        else {"at": pause.at.isoformat(), "by": pause.by, "reason": pause.reason},
        "breakers_open": open_breakers,
    }


def _print(status: dict[str, Any], repair_enabled: bool) -> None:
    counts = status["health"]
    click.echo(
        f"ready servers: {sum(counts.values())} ("
        + ", ".join(f"{state} {count}" for state, count in counts.items())
        + ")"
    )
    herd = status["herd_guard"]
    if herd["tripped"]:
        click.echo(f"herd guard: TRIPPED at {herd['tripped_at']} UTC: {herd['reason']}")
        click.echo("  automatic repair is held; `rachel-cloud health resume` clears it")
    else:
        click.echo("herd guard: clear")
    pause = status["paused"]
    if not repair_enabled:
        click.echo("automatic repair: off (RACHEL_REPAIR=false)")
    elif pause is not None:
        click.echo(
            f"automatic repair: PAUSED by {pause['by']} at {pause['at']} UTC: {pause['reason']}"
        )
    else:
        click.echo(
            "automatic repair: on" + (" (held by the herd guard)" if herd["tripped"] else "")
        )
    breakers = status["breakers_open"]
    click.echo(f"circuit breakers open: {len(breakers)}")
    for b in breakers:
        click.echo(
            f"  server {b['server_id']} ({b['name'] or '-'}) until {b['until']} UTC: {b['reason']}"
        )
    recent = status["recent_fleet_events"]
    if recent:
        click.echo("recent fleet events:")
        for event in recent:
            click.echo(f"  {event['at']} UTC {event['actor']}: {event['message']}")


def _redis_error(exc: redis.RedisError) -> click.ClickException:
    return click.ClickException(f"cannot reach Redis: {exc}")


@health_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(as_json: bool) -> None:
    """Ready servers by health state, the herd guard, the pause, open circuit breakers."""
    from core.platform.clock import utcnow

    rt = runtime("cli")
    try:
        found = _status(rt.redis, utcnow())
    except redis.RedisError as exc:
        raise _redis_error(exc) from None
    found["repair_enabled"] = rt.settings.repair_enabled
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    _print(found, rt.settings.repair_enabled)


@health_group.command("resume")
@operator_option
def resume_command(operator: str | None) -> None:
    """Clear the herd guard and lift a pause: automatic repair resumes (recorded).

    Servers that turned unhealthy before now no longer count toward the herd,
    so the same herd does not trip the guard again.
    """
    from core.domain.herd import resume_repair

    rt = runtime("cli")
    try:
        click.echo(resume_repair(rt.redis, actor(operator)))
    except redis.RedisError as exc:
        raise _redis_error(exc) from None


@health_group.command("pause")
@click.option("--reason", required=True, help="Why (recorded on the fleet's timeline).")
@operator_option
def pause_command(reason: str, operator: str | None) -> None:
    """Pause automatic repair fleet-wide until `rachel-cloud health resume` (recorded).

    Health is still decided, silent servers still probed, and owners and
    operators still told; only restarts and reboots stop.
    """
    from core.domain.herd import pause_repair

    if not reason.strip():
        raise click.BadParameter("give a reason", param_hint="--reason")
    rt = runtime("cli")
    try:
        click.echo(pause_repair(rt.redis, actor(operator), reason.strip()))
    except redis.RedisError as exc:
        raise _redis_error(exc) from None
