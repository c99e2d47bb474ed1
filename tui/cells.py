"""What a fleet row looks like: columns, cell text and style, sort keys. Pure.

A cell is a `(text, style)` pair: plain data that can be compared (the table
diff applies only the cells that changed) and turned into a Rich `Text` by the
widget. Styles are Rich style strings; the screens' layout lives in .tcss.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from core.domain.fleet import FleetRow, LastEvent
from core.domain.health import HealthState
from core.domain.lifecycle import IN_FLIGHT, Status
from core.security.redaction import redact


class Cell(NamedTuple):
    """One table cell: its text and a Rich style ("" for none)."""

    text: str
    style: str = ""


@dataclass(frozen=True)
class Column:
    """A fleet table column."""

    key: str
    label: str
    width: int | None = None


COLUMNS: tuple[Column, ...] = (
    Column("mark", " ", 1),
    Column("id", "ID", 6),
    Column("customer", "CUSTOMER", 16),
    Column("status", "STATUS", 17),
    Column("health", "HEALTH", 9),
    Column("phase", "PHASE", 9),
    Column("in_phase", "IN PHASE", 8),
    Column("total", "TOTAL/SLA", 12),
    Column("ipv4", "IPV4", 15),
    Column("location", "LOC", 5),
    Column("last_event", "LAST EVENT", 40),
)
COLUMN_KEYS: tuple[str, ...] = tuple(c.key for c in COLUMNS)
#: Columns an operator can sort by (all but the mark).
SORTABLE: tuple[str, ...] = COLUMN_KEYS[1:]

STATUS_STYLE: dict[str, str] = {
    Status.PENDING: "grey70",
    Status.CREATING: "cyan",
    Status.CLOUD_INIT: "blue",
    Status.INJECTING_SECRETS: "magenta",
    Status.READY: "bold green",
    Status.FAILED: "bold red",
    Status.DEPROVISIONING: "yellow",
    Status.DELETED: "dim",
}
STATUS_ORDER: dict[str, int] = {status.value: i for i, status in enumerate(Status)}
HEALTH_STYLE: dict[str, str] = {
    HealthState.HEALTHY: "green",
    HealthState.DEGRADED: "yellow",
    HealthState.UNHEALTHY: "bold red",
    HealthState.UNKNOWN: "grey70",
}
#: How each kind of event stands out in a server's event log (the rest: plain).
KIND_STYLE: dict[str, str] = {
    "health": "bold",
    "probe": "cyan",
    "repair": "bold magenta",
    "notify": "blue",
    "error": "red",
    "retry": "yellow",
    "capacity": "yellow",
    "rollout": "bold cyan",
}
#: Worst first: sorting by health ascending puts what needs attention on top.
HEALTH_ORDER: dict[str, int] = {
    HealthState.UNHEALTHY: 0,
    HealthState.DEGRADED: 1,
    HealthState.UNKNOWN: 2,
    HealthState.HEALTHY: 3,
}
#: The provisioning phases a progress bar counts (pending has done none).
PHASES: tuple[Status, ...] = (
    Status.CREATING,
    Status.CLOUD_INIT,
    Status.INJECTING_SECRETS,
    Status.READY,
)
MARK = "●"
#: Style of a status the reconciler disputes (its VPS is gone, it is stuck, a stray VPS).
DRIFT_STYLE = "bold white on red"


@dataclass(frozen=True)
class Row:
    """A fleet row as the TUI holds it: the server and its newest event."""

    server: FleetRow
    last_event: LastEvent | None = None

    @property
    def key(self) -> str:
        return str(self.server.id)


def duration(seconds: float | None) -> str:
    """A short duration: 42s, 3m05s, 2h07m, 3d04h."""
    if seconds is None:
        return "-"
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def timestamp(value: object) -> str:
    """A date and time to the second, "-" for none (the server and jobs tables)."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, datetime) else "-"


def phase_index(status: str) -> int:
    """How many provisioning phases a server in `status` has reached (0..4)."""
    try:
        return PHASES.index(Status(status)) + 1
    except ValueError:
        return 0


def phase_cell(status: str) -> Cell:
    """A four-step progress bar of the provisioning phases."""
    if status == Status.FAILED:
        return Cell("✗ failed", "red")
    if status in (Status.DEPROVISIONING, Status.DELETED):
        return Cell("-", "dim")
    done = phase_index(status)
    return Cell("■" * done + "□" * (len(PHASES) - done) + f" {done}/{len(PHASES)}", "")


def status_cell(server: FleetRow) -> Cell:
    """The status, and the reconciler's finding when it has one (`ready !lost`)."""
    if server.drift:
        return Cell(f"{server.status} !{server.drift}", DRIFT_STYLE)
    return Cell(server.status, STATUS_STYLE.get(server.status, ""))


def health_of(server: FleetRow) -> str | None:
    """The server's health, which only a ready server has (None otherwise)."""
    return server.health if server.status == Status.READY else None


def health_cell(server: FleetRow) -> Cell:
    """The health of a ready server; "-" for the others."""
    health = health_of(server)
    if health is None:
        return Cell("-", "dim")
    return Cell(health, HEALTH_STYLE.get(health, ""))


def sla_style(seconds: float, sla: float) -> str:
    """Green within the SLA, yellow in its last quarter, red beyond it."""
    if seconds > sla:
        return "bold red"
    if seconds > 0.75 * sla:
        return "yellow"
    return "green"


def total_cell(row: FleetRow, now: datetime, sla: float) -> Cell:
    """Provisioning time so far (in flight) or as recorded (ready), against the SLA."""
    if row.status == Status.READY and row.provisioning_seconds is not None:
        took = row.provisioning_seconds
        return Cell(f"{duration(took)}/{int(sla)}s", sla_style(took, sla))
    if row.status in IN_FLIGHT:
        took = (now - row.created_at).total_seconds()
        return Cell(f"{duration(took)}/{int(sla)}s", sla_style(took, sla))
    return Cell("-", "dim")


def time_cells(server: FleetRow, now: datetime, sla: float) -> dict[str, Cell]:
    """The cells that change as time passes: time in phase, total against the SLA."""
    return {
        "in_phase": Cell(duration((now - server.status_changed_at).total_seconds()), ""),
        "total": total_cell(server, now, sla),
    }


def last_event_cell(row: Row) -> Cell:
    """The newest event; for a failed server, why it failed; for an unhealthy one, why.

    A failure is followed by its cleanup's events ("deleted the VPS"), an
    unhealthy server by probes and repairs: the reason must not scroll away
    behind them.
    """
    server = row.server
    if server.status == Status.FAILED and server.last_error:
        text = f"failed: {redact(server.last_error)}"
        return Cell(text.replace("\n", " ")[:120], "red")
    if health_of(server) == HealthState.UNHEALTHY and server.health_reason:
        # Why the assistant is down, ahead of the repairs' events that follow it.
        text = f"unhealthy: {redact(server.health_reason)}"
        return Cell(text.replace("\n", " ")[:120], "red")
    event = row.last_event
    if event is None:
        return Cell("", "dim")
    return Cell(f"{event.kind}: {event.message}".replace("\n", " ")[:120], "")


def render(row: Row, now: datetime, sla: float, *, marked: bool = False) -> dict[str, Cell]:
    """Every cell of one row, at time `now`."""
    server = row.server
    return {
        "mark": Cell(MARK if marked else " ", "bold yellow"),
        "id": Cell(str(server.id), ""),
        "customer": Cell(server.customer, ""),
        "status": status_cell(server),
        "health": health_cell(server),
        "phase": phase_cell(server.status),
        **time_cells(server, now, sla),
        "ipv4": Cell(server.ipv4 or "-", "" if server.ipv4 else "dim"),
        "location": Cell(server.location, ""),
        "last_event": last_event_cell(row),
    }


def _ip_key(row: Row) -> Any:
    if not row.server.ipv4:
        return (1, 0)
    try:
        return (0, int(ipaddress.ip_address(row.server.ipv4)))
    except ValueError:
        return (0, 0)


def _total_key(row: Row) -> Any:
    if row.server.status == Status.READY and row.server.provisioning_seconds is not None:
        return row.server.provisioning_seconds
    return -row.server.created_at.timestamp()  # older in-flight servers: longer so far


SORT_KEYS: dict[str, Callable[[Row], Any]] = {
    "id": lambda r: r.server.id,
    "customer": lambda r: (r.server.customer, r.server.id),
    "status": lambda r: (STATUS_ORDER.get(r.server.status, 99), r.server.id),
    "health": lambda r: (HEALTH_ORDER.get(health_of(r.server) or "", 99), r.server.id),
    "phase": lambda r: (phase_index(r.server.status), r.server.id),
    # Longer in phase first when ascending would be surprising; ascending = shortest first.
    "in_phase": lambda r: (-r.server.status_changed_at.timestamp(), r.server.id),
    "total": lambda r: (_total_key(r), r.server.id),
    "ipv4": lambda r: (_ip_key(r), r.server.id),
    "location": lambda r: (r.server.location, r.server.id),
    "last_event": lambda r: (
        r.last_event.at.timestamp() if r.last_event else 0.0,
        r.server.id,
    ),
}
