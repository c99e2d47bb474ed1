"""What `systemctl status` and `journalctl` print, from a unit's state and journal."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sim.service import Clock, JournalEntry, Service
from sim.timers import Timer


def _stamp(clock: Clock, at: float) -> str:
    return time.strftime("%b %d %H:%M:%S", time.gmtime(clock.wall(at)))


def journal_lines(
    entries: Sequence[JournalEntry], count: int | None, output: str, hostname: str, clock: Clock
) -> str:
    """`journalctl` lines: `short` (`Mon DD HH:MM:SS host ident[pid]: msg`), `short-iso`
    (`2026-12-06T13:11:29+0000 host ...`) or `cat` (the message alone)."""
    chosen = list(entries)[-count:] if count else list(entries)
    if output == "cat":
        return "".join(f"{e.message}\n" for e in chosen)
    stamp = _iso if output == "short-iso" else _stamp
    return "".join(
        f"{stamp(clock, e.at)} {hostname} {e.ident}[{e.pid}]: {e.message}\n" for e in chosen
    )


def _iso(clock: Clock, at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(clock.wall(at)))


def status_text(props: dict[str, str], service: Service, hostname: str, clock: Clock) -> str:
    """`systemctl status <unit>`: the header, the state and the last ten journal lines."""
    active, sub, result = props["ActiveState"], props["SubState"], props["Result"]
    bullet = {"active": "\u25cf", "failed": "\u00d7"}.get(active, "\u25cb")
    state = f"{active} ({sub})"
    if result != "success":
        state += f" (Result: {result})"
    lines = [
        f"{bullet} {service.title}",
        f"     Loaded: loaded ({props['FragmentPath']}; {props['UnitFileState']}; preset: enabled)",
        f"     Active: {state}",
    ]
    if props["MainPID"] != "0":
        lines.append(
            f"   Main PID: {props['MainPID']} ({service.unit.exec_start[0].rsplit('/', 1)[-1]})"
        )
    elif props["ExecMainCode"] != "0":
        status = props["ExecMainStatus"]
        lines.append(
            f"    Process: ExecStart={service.unit.exec_line} (code=exited, status={status})"
        )
    tail = journal_lines(service.journal, 10, "short", hostname, clock)
    return "\n".join(lines) + "\n\n" + tail


def timer_status_text(props: dict[str, str], timer: Timer, hostname: str, clock: Clock) -> str:
    """`systemctl status <timer>`: its state, what it triggers and when, its journal."""
    active, sub = props["ActiveState"], props["SubState"]
    bullet = {"active": "\u25cf", "failed": "\u00d7"}.get(active, "\u25cb")
    state = f"{active} ({sub})"
    if props["Result"] != "success":
        state += f" (Result: {props['Result']})"
    elapse = props["NextElapseUSecMonotonic"]
    trigger = "n/a" if elapse == "infinity" or active != "active" else f"{elapse} after boot"
    lines = [
        f"{bullet} {timer.title}",
        f"     Loaded: loaded ({props['FragmentPath']}; {props['UnitFileState']}; preset: enabled)",
        f"     Active: {state}",
        f"    Trigger: {trigger}",
        f"   Triggers: \u25cf {props['Unit']}",
    ]
    tail = journal_lines(timer.journal, 10, "short", hostname, clock)
    return "\n".join(lines) + "\n\n" + tail
