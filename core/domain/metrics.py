"""Prometheus metrics: counts queried from the database and Redis, rendered as text.

Everything is derived from shared state (the database rows, Redis counters),
never from one process's memory, so every web process answers the same and a
restart loses nothing. `render` is pure; `collect_database` and
`webhook_results` query; the web app adds the queue depths (it reads RQ, core
does not).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee

from core.domain.lifecycle import Status
from core.store.models import Server

#: Upper bounds (seconds) of the provisioning-duration histogram buckets.
PROVISIONING_BUCKETS: tuple[float, ...] = (15, 30, 45, 60, 90, 120, 180, 300, 600)
WEBHOOK_RESULTS_KEY = "rachel-cloud:metrics:webhook-results"


@dataclass(frozen=True)
class Snapshot:
    """Everything `/metrics` shows, already counted."""

    servers_by_status: Mapping[str, int]
    provisioning_seconds: Sequence[float]
    sla_seconds: float
    webhook_results: Mapping[tuple[str, str], int] = field(default_factory=dict)
    queue_depths: Mapping[str, int] = field(default_factory=dict)
    intake_pending: int = 0


def collect_database() -> tuple[dict[str, int], list[float]]:
    """(servers per status, every recorded provisioning time) from the database."""
    counts = {status.value: 0 for status in Status}
    query = Server.select(Server.status, peewee.fn.COUNT(Server.id)).group_by(Server.status)
    rows: Any = query.tuples()
    for status, count in rows:
        counts[str(status)] = int(count)
    times: Any = (
        Server.select(Server.provisioning_seconds)
        .where(Server.provisioning_seconds.is_null(False))
        .tuples()
    )
    durations = [float(value) for (value,) in times]
    return counts, durations


def parse_webhook_results(raw: Mapping[bytes | str, bytes | str]) -> dict[tuple[str, str], int]:
    """Decode the Redis hash of webhook result counters."""
    results: dict[tuple[str, str], int] = {}
    for key, value in raw.items():
        text = key.decode() if isinstance(key, bytes) else key
        endpoint, _, result = text.partition("|")
        results[(endpoint, result)] = int(value)
    return results


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels: str) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render(snapshot: Snapshot) -> str:
    """The Prometheus text exposition (format 0.0.4) of a snapshot."""
    out: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("rachel_cloud_servers", "gauge", "Servers by lifecycle status.")
    for status, count in sorted(snapshot.servers_by_status.items()):
        out.append(f"rachel_cloud_servers{_labels(status=status)} {count}")

    name = "rachel_cloud_provisioning_seconds"
    family(name, "histogram", "Time from deploy accepted to ready.")
    durations = list(snapshot.provisioning_seconds)
    for bound in (*PROVISIONING_BUCKETS, math.inf):
        le = "+Inf" if math.isinf(bound) else repr(float(bound))  # as client libraries do
        count = sum(1 for d in durations if d <= bound)
        out.append(f"{name}_bucket{_labels(le=le)} {count}")
    out.append(f"{name}_sum {_number(sum(durations))}")
    out.append(f"{name}_count {len(durations)}")

    hits = sum(1 for d in durations if d <= snapshot.sla_seconds)
    family("rachel_cloud_sla_hits", "counter", "Provisions that finished within the SLA.")
    out.append(f"rachel_cloud_sla_hits_total {hits}")
    family("rachel_cloud_sla_misses", "counter", "Provisions that finished after the SLA.")
    out.append(f"rachel_cloud_sla_misses_total {len(durations) - hits}")
    family("rachel_cloud_sla_seconds", "gauge", "The provisioning SLA (RACHEL_SLA).")
    out.append(f"rachel_cloud_sla_seconds {_number(snapshot.sla_seconds)}")

    family("rachel_cloud_webhook_requests", "counter", "Webhook and callback requests by result.")
    for (endpoint, result), count in sorted(snapshot.webhook_results.items()):
        labels = _labels(endpoint=endpoint, result=result)
        out.append(f"rachel_cloud_webhook_requests_total{labels} {count}")

    family("rachel_cloud_intake_pending", "gauge", "Deploys stored, not yet carried out.")
    out.append(f"rachel_cloud_intake_pending {snapshot.intake_pending}")

    family("rachel_cloud_queue_depth", "gauge", "Jobs waiting in each RQ queue.")
    for queue, depth in sorted(snapshot.queue_depths.items()):
        out.append(f"rachel_cloud_queue_depth{_labels(queue=queue)} {depth}")
    return "\n".join(out) + "\n"
