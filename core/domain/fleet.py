"""The fleet as rows: what the CLI's `fleet` and the TUI show, from one query."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import peewee

from core.domain.lifecycle import Status
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.store.models import Customer, Event, Server


@dataclass(frozen=True)
class FleetRow:
    """One server, flattened for display. Never holds a secret."""

    id: int
    name: str | None
    customer: str
    status: str
    attempt: int
    ipv4: str | None
    location: str
    server_type: str
    provider_id: int | None
    created_at: datetime
    status_changed_at: datetime
    seconds_in_status: float
    seconds_total: float
    provisioning_seconds: float | None
    last_error: str | None
    job_id: str | None
    drift: str | None = None  # the reconciler's current finding: orphan, lost, stuck
    drift_reason: str | None = None
    health: str = "unknown"  # core.domain.health.HealthState; meaningful once ready
    health_reason: str | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "status_changed_at"):
            data[key] = data[key].isoformat()
        return data


def fleet_rows(
    *,
    include_deleted: bool = False,
    clock: Clock = SYSTEM_CLOCK,
    server_ids: list[int] | None = None,
    limit: int | None = None,
) -> list[FleetRow]:
    """Every server (deleted ones only when asked), newest first (the `limit` newest)."""
    # Only the columns shown, as tuples: building full model instances (every
    # column, the encrypted key included) was most of the TUI's load of a
    # 10,000-server fleet.
    query = (
        Server.select(
            Server.id,
            Server.name,
            Customer.external_id,
            Server.status,
            Server.attempt,
            Server.ipv4,
            Server.location,
            Server.server_type,
            Server.provider_id,
            Server.created_at,
            Server.status_changed_at,
            Server.ready_at,
            Server.deleted_at,
            Server.provisioning_seconds,
            Server.last_error,
            Server.job_id,
            Server.drift,
            Server.drift_reason,
            Server.health,
            Server.health_reason,
        )
        .join(Customer)
        .order_by(Server.id.desc())
    )
    if not include_deleted:
        query = query.where(Server.status != Status.DELETED)
    if server_ids is not None:
        query = query.where(Server.id.in_(server_ids))
    if limit is not None:
        query = query.limit(limit)
    now = clock.now()
    rows = []
    for values in query.tuples():
        (
            server_id,
            name,
            customer,
            status,
            attempt,
            ipv4,
            location,
            server_type,
            provider_id,
            created_at,
            status_changed_at,
            ready_at,
            deleted_at,
            provisioning_seconds,
            last_error,
            job_id,
            drift,
            drift_reason,
            health,
            health_reason,
        ) = cast(tuple[Any, ...], values)
        finished = ready_at if status == Status.READY else None
        end = finished or (deleted_at if status == Status.DELETED else None) or now
        rows.append(
            FleetRow(
                id=server_id,
                name=name,
                customer=customer,
                status=status,
                attempt=attempt,
                ipv4=ipv4,
                location=location,
                server_type=server_type,
                provider_id=provider_id,
                created_at=created_at,
                status_changed_at=status_changed_at,
                seconds_in_status=max(0.0, (now - status_changed_at).total_seconds()),
                seconds_total=max(0.0, (end - created_at).total_seconds()),
                provisioning_seconds=provisioning_seconds,
                last_error=last_error,
                job_id=job_id,
                drift=drift,
                drift_reason=drift_reason,
                health=health,
                health_reason=health_reason,
            )
        )
    return rows


def timeline(server_id: int) -> list[Event]:
    """A server's events, oldest first."""
    return list(Event.select().where(Event.server == server_id).order_by(Event.at, Event.id))


@dataclass(frozen=True)
class ProvisioningStats:
    """Provisioning times of the servers that became ready within a window."""

    count: int
    p50: float | None
    p95: float | None
    sla_hit_rate: float | None  # share of them provisioned within the SLA, 0..1


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0..100) of `values`, linearly interpolated; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * min(max(q, 0.0), 100.0) / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summarize(durations: Sequence[float], sla_seconds: float) -> ProvisioningStats:
    """p50, p95 and SLA hit rate of some provisioning durations (pure)."""
    if not durations:
        return ProvisioningStats(0, None, None, None)
    hits = sum(1 for d in durations if d <= sla_seconds)
    return ProvisioningStats(
        count=len(durations),
        p50=percentile(durations, 50),
        p95=percentile(durations, 95),
        sla_hit_rate=hits / len(durations),
    )


def provisioning_stats(
    sla_seconds: float, *, window_seconds: float = 3600.0, clock: Clock = SYSTEM_CLOCK
) -> ProvisioningStats:
    """Provisioning p50/p95 and SLA hit rate of the servers first ready in the last window.

    A server's first ready time is `created_at + provisioning_seconds` (a later
    re-injection moves `ready_at` but is not a provisioning).
    """
    since = clock.now() - timedelta(seconds=window_seconds)
    rows: Any = (
        Server.select(Server.created_at, Server.provisioning_seconds)
        .where(Server.provisioning_seconds.is_null(False) & (Server.ready_at >= since))
        .tuples()
    )
    durations = [
        float(seconds)
        for created, seconds in rows
        if created + timedelta(seconds=float(seconds)) >= since
    ]
    return summarize(durations, sla_seconds)


def recent_provisioning_times(limit: int = 60) -> list[float]:
    """The provisioning times of the last `limit` servers to become ready, oldest first."""
    rows: Any = (
        Server.select(Server.provisioning_seconds)
        .where(Server.provisioning_seconds.is_null(False))
        .order_by(Server.ready_at.desc(), Server.id.desc())
        .limit(limit)
        .tuples()
    )
    return [float(seconds) for (seconds,) in reversed(list(rows))]


def status_counts() -> dict[str, int]:
    """How many servers are in each status (every status present, zero included)."""
    counts = {status.value: 0 for status in Status}
    rows: Any = (
        Server.select(Server.status, peewee.fn.COUNT(Server.id)).group_by(Server.status).tuples()
    )
    for status, count in rows:
        counts[str(status)] = int(count)
    return counts


def drift_counts() -> dict[str, int]:
    """How many live servers carry each kind of reconciler finding (kinds found only)."""
    rows: Any = (
        Server.select(Server.drift, peewee.fn.COUNT(Server.id))
        .where(Server.drift.is_null(False) & (Server.status != Status.DELETED))
        .group_by(Server.drift)
        .tuples()
    )
    return {str(kind): int(count) for kind, count in rows}


@dataclass(frozen=True)
class LastEvent:
    """The newest event of a server (the fleet view's "last event" column)."""

    at: datetime
    kind: str
    message: str


def last_events(server_ids: list[int] | None = None) -> dict[int, LastEvent]:
    """Each server's newest event (by id), optionally for some servers only."""
    latest = Event.select(Event.server.alias("sid"), peewee.fn.MAX(Event.id).alias("mid")).group_by(
        Event.server
    )
    if server_ids is not None:
        latest = latest.where(Event.server.in_(server_ids))
    sub = latest.alias("latest")
    rows: Any = (
        Event.select(Event.server, Event.at, Event.kind, Event.message)
        .join(sub, on=(Event.id == sub.c.mid))
        .tuples()
    )
    return {int(sid): LastEvent(at, str(kind), str(message)) for sid, at, kind, message in rows}
