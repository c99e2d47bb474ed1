"""`rachel-cloud rollout start|status|pause|resume|abort|rollback`: a release across the fleet.

Each action is a database change (refused with a clear error, changing
nothing, when it cannot be done), then a tick of the driver is queued so it
takes effect at once; the driver's cron task would pick it up within
RACHEL_ROLLOUT_INTERVAL anyway.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from cli.common import actor, operator_option, runtime

if TYPE_CHECKING:
    from cli.runtime import Runtime
    from core.store.models import Rollout


@click.group("rollout")
def rollout_group() -> None:
    """Roll a Rachel8 release out across the fleet: canary, waves, health gate, rollback."""


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from core.platform.settings_parsing import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _tick(rt: Runtime, rollout: Rollout) -> None:
    """Wake the driver; a Redis outage only delays it until its cron task runs."""
    from jobs.rollout_operator import wake_driver

    warning = wake_driver(rt.redis, rollout.id)
    if warning:
        click.echo(f"warning: {warning}", err=True)


@rollout_group.command("start")
@click.argument("ref")
@click.option("--waves", default=None, help="Canary then cumulative shares [canary,10%,50%,100%].")
@click.option("--max-in-flight", type=int, default=None, help="Most servers updating at once.")
@click.option("--soak", callback=_duration, help="Wait after each wave (e.g. 60s, 5m).")
@click.option("--gate", callback=_duration, help="How long each server must stay healthy.")
@click.option("--halt-share", type=float, default=None, help="Halt above this failed share.")
@operator_option
def start_command(
    ref: str,
    *,
    waves: str | None,
    max_in_flight: int | None,
    soak: float | None,
    gate: float | None,
    halt_share: float | None,
    operator: str | None,
) -> None:
    """Roll release REF (a commit id, or a unique prefix of 7+ digits) out to every ready server.

    The canary goes first, then each wave up to its share of the fleet; every
    server passes a health gate; a failure in the canary, or a wave with a
    failed share above --halt-share, halts the rollout and rolls back every
    server it switched. Defaults: RACHEL_ROLLOUT_* settings.
    """
    from core.domain import rollout_store
    from core.domain.releases import resolve, short
    from core.domain.rollout_store import RolloutOptions
    from core.domain.rollout_waves import DEFAULT_WAVES, parse_waves

    rt = runtime("cli")
    s = rt.settings
    options = RolloutOptions(
        waves=parse_waves(waves if waves is not None else DEFAULT_WAVES),
        max_in_flight=max_in_flight if max_in_flight is not None else s.rollout_max_in_flight,
        soak_seconds=soak if soak is not None else s.rollout_soak_seconds,
        gate_seconds=gate if gate is not None else s.rollout_gate_seconds,
        halt_share=halt_share if halt_share is not None else s.rollout_halt_share,
    )
    options.check()
    release = resolve(ref)
    rollout = rollout_store.start(release, options, actor(operator), s.rachel8_commit)
    _tick(rt, rollout)
    click.echo(
        f"rollout {rollout.id} of {short(release.commit)} started; "
        "follow it with `rachel-cloud rollout status`"
    )


def _status(rollout: Rollout) -> dict[str, Any]:
    from core.domain.rollout_states import LIVE_STATES, NO_WAVE, RolloutState
    from core.store.db import connection
    from core.store.models import Event, Release, RolloutTarget, Server

    with connection():
        release = Release.get_by_id(rollout.release_id)
        rows: Any = (
            RolloutTarget.select(RolloutTarget, Server.name, Server.location)
            .join(Server, on=(RolloutTarget.server == Server.id))
            .where(RolloutTarget.rollout == rollout.id)
            .order_by(RolloutTarget.position)
            .dicts()
        )
        targets = [
            {
                "server_id": t["server"],
                "name": t["name"],
                "location": t["location"],
                "wave": t["wave"],
                "state": t["state"],
                "from_commit": t["from_commit"],
                "to_commit": t["to_commit"],
                "reason": t["reason"],
                "switched_at": _iso(t["switched_at"]),
                "finished_at": _iso(t["finished_at"]),
            }
            for t in rows
        ]
        events: Any = (
            Event.select(Event.at, Event.actor, Event.message)
            .where(
                Event.server.is_null()
                & (Event.kind == "rollout")
                & Event.message.startswith(f"rollout {rollout.id}:")
            )
            .order_by(Event.id.desc())
            .limit(10)
            .tuples()
        )
        recent = [{"at": at.isoformat(), "actor": a, "message": m} for at, a, m in events]
    waves: dict[int, dict[str, int]] = {}
    for t in targets:
        if t["wave"] != NO_WAVE:
            counts = waves.setdefault(t["wave"], {})
            counts[t["state"]] = counts.get(t["state"], 0) + 1
    planned = [t for t in targets if t["wave"] != NO_WAVE]
    finished = sum(1 for t in planned if t["state"] not in ("pending", "updating", "gating"))
    return {
        "id": rollout.id,
        "state": rollout.state,
        "live": RolloutState(rollout.state) in LIVE_STATES,
        "release": {"commit": release.commit, "notes": release.notes},
        "reason": rollout.reason,
        "wave": rollout.wave,
        "waves": [
            {"wave": w, "servers": sum(c.values()), "states": c} for w, c in sorted(waves.items())
        ],
        "progress": {"planned": len(planned), "finished": finished},
        "soak_until": _iso(rollout.soak_until),
        "options": {
            "canary": rollout.canary,
            "shares": json.loads(rollout.shares),
            "max_in_flight": rollout.max_in_flight,
            "soak_seconds": rollout.soak_seconds,
            "gate_seconds": rollout.gate_seconds,
            "halt_share": rollout.halt_share,
        },
        "created_by": rollout.created_by,
        "created_at": _iso(rollout.created_at),
        "started_at": _iso(rollout.started_at),
        "finished_at": _iso(rollout.finished_at),
        "targets": targets,
        "recent_events": list(reversed(recent)),
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


#: Target states shown server by server without --all (the rest are counted per wave).
NOTABLE = frozenset(
    {"updating", "gating", "failed", "rolling_back", "rolled_back", "rollback_failed"}
)


def _print(status: dict[str, Any], show_all: bool) -> None:
    o = status["options"]
    click.echo(
        f"rollout {status['id']}: {status['state'].upper()}  release {status['release']['commit']}"
        + (f" ({status['release']['notes']})" if status["release"]["notes"] else "")
    )
    if status["reason"]:
        click.echo(f"  why: {status['reason']}")
    p = status["progress"]
    click.echo(
        f"  progress: {p['finished']} of {p['planned']} planned server(s) done; by "
        f"{status['created_by']} at {status['created_at']} UTC"
    )
    shares = ",".join(f"{s * 100:g}%" for s in o["shares"])
    click.echo(
        f"  waves {o['canary']},{shares}; at most {o['max_in_flight']} in flight; gate "
        f"{o['gate_seconds']:g}s; soak {o['soak_seconds']:g}s; halt above {o['halt_share']:.0%}"
    )
    if status["soak_until"] and status["state"] == "running":
        click.echo(f"  soaking until {status['soak_until']} UTC")
    for wave in status["waves"]:
        name = "canary" if wave["wave"] == 0 else f"wave {wave['wave']}"
        current = " <- current" if wave["wave"] == status["wave"] and status["live"] else ""
        counts = ", ".join(f"{n} {s}" for s, n in sorted(wave["states"].items()))
        click.echo(f"  {name:<8} {wave['servers']:>4} server(s): {counts}{current}")
    shown = [
        t
        for t in status["targets"]
        if show_all or t["state"] in NOTABLE or (t["wave"] == status["wave"] and status["live"])
    ]
    if shown:
        click.echo("  servers:")
    for t in shown:
        wave = "-" if t["wave"] < 0 else str(t["wave"])
        click.echo(
            f"    {t['server_id']:>6} {t['name'] or '-':<20} {t['location']:<6} wave {wave:<3} "
            f"{t['state']:<16} {(t['from_commit'] or '-')[:12]} -> {t['to_commit'][:12]}"
            + (f"  {t['reason']}" if t["reason"] else "")
        )
    hidden = len(status["targets"]) - len(shown)
    if hidden:
        click.echo(f"  ({hidden} more server(s): `--all` lists them)")
    if status["recent_events"]:
        click.echo("  recent:")
        for e in status["recent_events"]:
            click.echo(f"    {e['at']} UTC {e['actor']}: {e['message']}")


@rollout_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--all", "show_all", is_flag=True, help="List every server of the rollout.")
def status_command(as_json: bool, show_all: bool) -> None:
    """The newest rollout: its state, waves, progress, each server's outcome, why it halted."""
    from core.domain import rollout_store

    runtime("cli")
    rollout = rollout_store.latest()
    if rollout is None:
        if as_json:
            click.echo("null")
            return
        click.echo("no rollout yet: `rachel-cloud rollout start REF` starts one")
        return
    status = _status(rollout)
    if as_json:
        click.echo(json.dumps(status, indent=2))
        return
    _print(status, show_all)


def _action(name: str, operator: str | None, reason: str | None = None) -> None:
    """Apply an action through `jobs.rollout_operator`, the TUI's way too."""
    from jobs.rollout_operator import act

    rt = runtime("cli")
    outcome = act(rt.redis, name, actor(operator), reason)
    if outcome.warning:
        click.echo(f"warning: {outcome.warning}", err=True)
    click.echo(f"rollout {outcome.rollout_id}: {outcome.state}")


@rollout_group.command("pause")
@operator_option
def pause_command(operator: str | None) -> None:
    """Pause the rollout: nothing new starts; updates under way finish and are judged."""
    _action("pause", operator)


@rollout_group.command("resume")
@operator_option
def resume_command(operator: str | None) -> None:
    """Resume a paused rollout."""
    _action("resume", operator)


@rollout_group.command("abort")
@click.option("--reason", default=None, help="Why (recorded on the fleet's timeline).")
@operator_option
def abort_command(reason: str | None, operator: str | None) -> None:
    """Abort the rollout: nothing more starts; updated servers keep the release
    (`rollout rollback` then takes them back)."""
    _action("abort", operator, reason.strip() if reason else None)


@rollout_group.command("rollback")
@operator_option
def rollback_command(operator: str | None) -> None:
    """Roll back every server the rollout switched (a paused, halted or aborted rollout)."""
    _action("rollback", operator)
