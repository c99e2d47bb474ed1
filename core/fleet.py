"""The fleet as rows: what the CLI's `fleet` and the TUI show, from one query."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from core.clock import SYSTEM_CLOCK, Clock
from core.lifecycle import Status
from core.models import Customer, Event, Server


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
) -> list[FleetRow]:
    """Every server (deleted ones only when asked), newest first."""
    query = Server.select(Server, Customer.external_id).join(Customer).order_by(Server.id.desc())
    if not include_deleted:
        query = query.where(Server.status != Status.DELETED)
    if server_ids is not None:
        query = query.where(Server.id.in_(server_ids))
    now = clock.now()
    rows = []
    for server in query:
        finished = server.ready_at if server.status == Status.READY else None
        end = finished or (server.deleted_at if server.status == Status.DELETED else None) or now
        rows.append(
            FleetRow(
                id=server.id,
                name=server.name,
                customer=server.customer.external_id,
                status=server.status,
                attempt=server.attempt,
                ipv4=server.ipv4,
                location=server.location,
                server_type=server.server_type,
                provider_id=server.provider_id,
                created_at=server.created_at,
                status_changed_at=server.status_changed_at,
                seconds_in_status=max(0.0, (now - server.status_changed_at).total_seconds()),
                seconds_total=max(0.0, (end - server.created_at).total_seconds()),
                provisioning_seconds=server.provisioning_seconds,
                last_error=server.last_error,
                job_id=server.job_id,
            )
        )
    return rows


def timeline(server_id: int) -> list[Event]:
    """A server's events, oldest first."""
    return list(Event.select().where(Event.server == server_id).order_by(Event.at, Event.id))
