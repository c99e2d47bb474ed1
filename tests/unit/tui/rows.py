"""Fleet rows as the TUI's pure logic sees them, for its unit tests."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.domain.fleet import FleetRow
from tui.cells import Row

NOW = datetime(2026, 1, 1, 12, 0, 0)


def row(sid: int, status: str = "ready", **fields: object) -> Row:
    values: dict[str, object] = {
        "id": sid,
        "name": f"rachel-{sid}",
        "customer": f"cus_{sid:03d}",
        "status": status,
        "attempt": 0,
        "ipv4": f"10.0.0.{sid}",
        "location": "fsn1",
        "server_type": "cx23",
        "provider_id": 1000 + sid,
        "created_at": NOW - timedelta(seconds=100),
        "status_changed_at": NOW - timedelta(seconds=10),
        "seconds_in_status": 10.0,
        "seconds_total": 100.0,
        "provisioning_seconds": 100.0 if status == "ready" else None,
        "last_error": None,
        "job_id": None,
    }
    event = fields.pop("event", None)
    values.update(fields)
    return Row(FleetRow(**values), event)  # type: ignore[arg-type]
