"""Prometheus metrics: counts queried from the database and Redis, rendered as text.

Everything is derived from shared state (the database rows, Redis counters),
never from one process's memory, so every web process answers the same and a
restart loses nothing. `render` is pure; `collect_database` and
`webhook_results` query; the web app adds the queue depths (it reads RQ, core
does not).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import peewee

from core.domain.exposition import Exposition, cumulative_counts
from core.domain.health_metrics import HealthSnapshot, render_health
from core.domain.lifecycle import Status
from core.domain.pool_metrics import PoolSnapshot, render_pool
from core.domain.rollout_metrics import RolloutSnapshot, render_rollouts
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
    workers: int | None = None
    health: HealthSnapshot | None = None
    rollouts: RolloutSnapshot | None = None
    pool: PoolSnapshot | None = None


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


def render(snapshot: Snapshot) -> str:
    """The Prometheus text exposition (format 0.0.4) of a snapshot."""
    out = Exposition()
    out.family("rachel_cloud_servers", "gauge", "Servers by lifecycle status.")
    for status, count in sorted(snapshot.servers_by_status.items()):
        out.sample("rachel_cloud_servers", count, status=status)

    durations = list(snapshot.provisioning_seconds)
    out.histogram(
        "rachel_cloud_provisioning_seconds",
        "Time from deploy accepted to ready.",
        PROVISIONING_BUCKETS,
        cumulative_counts(durations, PROVISIONING_BUCKETS),
        total=sum(durations),
        count=len(durations),
    )
    hits = sum(1 for d in durations if d <= snapshot.sla_seconds)
    out.family("rachel_cloud_sla_hits", "counter", "Provisions that finished within the SLA.")
    out.sample("rachel_cloud_sla_hits_total", hits)
    out.family("rachel_cloud_sla_misses", "counter", "Provisions that finished after the SLA.")
    out.sample("rachel_cloud_sla_misses_total", len(durations) - hits)
    out.family("rachel_cloud_sla_seconds", "gauge", "The provisioning SLA (RACHEL_SLA).")
    out.sample("rachel_cloud_sla_seconds", snapshot.sla_seconds)

    out.family(
        "rachel_cloud_webhook_requests", "counter", "Webhook and callback requests by result."
    )
    for (endpoint, result), count in sorted(snapshot.webhook_results.items()):
        out.sample("rachel_cloud_webhook_requests_total", count, endpoint=endpoint, result=result)

    out.family("rachel_cloud_intake_pending", "gauge", "Deploys stored, not yet carried out.")
    out.sample("rachel_cloud_intake_pending", snapshot.intake_pending)

    out.family("rachel_cloud_queue_depth", "gauge", "Jobs waiting in each RQ queue.")
    for queue, depth in sorted(snapshot.queue_depths.items()):
        out.sample("rachel_cloud_queue_depth", depth, queue=queue)
    if snapshot.workers is not None:
        out.family("rachel_cloud_workers", "gauge", "RQ workers alive (registered, heartbeating).")
        out.sample("rachel_cloud_workers", snapshot.workers)
    if snapshot.health is not None:
        render_health(out, snapshot.health)
    if snapshot.rollouts is not None:
        render_rollouts(out, snapshot.rollouts)
    if snapshot.pool is not None:
        render_pool(out, snapshot.pool)
    return out.text()
