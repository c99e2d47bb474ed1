"""Fleet-health metrics: counters the jobs keep in Redis, and what `/metrics` shows.

The health task and the repair jobs run in any worker, so what they count
lives in Redis (hashes, incremented best effort: a metric never fails a
repair). The rest is read when `/metrics` is scraped: ready servers by health,
open circuit breakers (database), heartbeat ages, heartbeat results and the
herd guard (Redis).

- `rachel_cloud_servers_health{health}` (gauge): ready servers by health state;
- `rachel_cloud_heartbeat_lag_seconds` (histogram): ready servers by the age of
  their latest heartbeat; `rachel_cloud_heartbeat_lag_max_seconds` (gauge): the oldest;
- `rachel_cloud_servers_without_heartbeat` (gauge): watched ready servers never heard from;
- `rachel_cloud_heartbeats_total{result}` (counter): heartbeats by answer
  (ok, unknown, denied, stale);
- `rachel_cloud_probes_total{outcome}` (counter): SSH probes of silent servers
  (reachable, unreachable, skipped);
- `rachel_cloud_repairs_total{action,outcome}` (counter): repair steps (restart,
  restart_agent, reboot, reset, give_up) by outcome (ok, failed, skipped);
- `rachel_cloud_detection_to_repair_seconds` (histogram): from a server turning
  unhealthy to healthy or degraded again;
- `rachel_cloud_notifications_total{to,outcome}` (counter): owner and operator
  messages (sent, failed, off, skipped);
- `rachel_cloud_herd_guard_tripped`, `rachel_cloud_repair_paused` (gauges, 0 or 1);
- `rachel_cloud_breakers_open` (gauge): ready servers whose circuit breaker is open.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from core.domain.exposition import Exposition, cumulative_counts
from core.domain.health import HEALTH_STATES
from core.domain.heartbeats import HeartbeatStore
from core.domain.herd import HerdStore
from core.store.models import Server

log = logging.getLogger(__name__)

REPAIRS_KEY = "rc:health:metrics:repairs"
PROBES_KEY = "rc:health:metrics:probes"
NOTIFICATIONS_KEY = "rc:health:metrics:notifications"
RECOVERY_KEY = "rc:health:metrics:recovery"
#: Upper bounds (seconds) of the heartbeat-lag and detection-to-repair histograms.
LAG_BUCKETS: tuple[float, ...] = (15, 30, 45, 60, 75, 90, 120, 300, 900)
RECOVERY_BUCKETS: tuple[float, ...] = (30, 60, 90, 120, 180, 300, 600, 1800, 3600, 14400)


def _count(client: Any, key: str, field_name: str, what: str) -> None:
    try:
        client.hincrby(key, field_name, 1)
    except redis.RedisError as exc:
        log.warning("could not count %s %s: %s", what, field_name, exc)


def count_repair(client: Any, action: str, outcome: str) -> None:
    """One repair step and its outcome (ok, failed, skipped)."""
    _count(client, REPAIRS_KEY, f"{action}|{outcome}", "the repair")


def count_probe(client: Any, outcome: str) -> None:
    """One SSH probe: reachable, unreachable or skipped (no way in)."""
    _count(client, PROBES_KEY, outcome, "the probe")


def count_notification(client: Any, to: str, outcome: str) -> None:
    """One message to the `owner` or the `operators`: sent, failed, off or skipped."""
    _count(client, NOTIFICATIONS_KEY, f"{to}|{outcome}", "the notification")


def observe_recoveries(client: Any, seconds: Sequence[float]) -> None:
    """Servers back from unhealthy after `seconds` each (one round trip for all)."""
    if not seconds:
        return
    try:
        with client.pipeline(transaction=False) as pipe:
            for value in seconds:
                for bound in RECOVERY_BUCKETS:
                    if value <= bound:
                        pipe.hincrby(RECOVERY_KEY, repr(float(bound)), 1)
                pipe.hincrby(RECOVERY_KEY, "count", 1)
                pipe.hincrbyfloat(RECOVERY_KEY, "sum", max(0.0, value))
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("could not record %d recovery times: %s", len(seconds), exc)


@dataclass(frozen=True)
class HealthSnapshot:
    """The fleet-health figures of one scrape."""

    by_state: Mapping[str, int]
    lags: Sequence[float]
    without_heartbeat: int
    heartbeats: Mapping[str, int] = field(default_factory=dict)
    probes: Mapping[str, int] = field(default_factory=dict)
    repairs: Mapping[tuple[str, str], int] = field(default_factory=dict)
    notifications: Mapping[tuple[str, str], int] = field(default_factory=dict)
    recovery: Mapping[str, float] = field(default_factory=dict)
    herd_tripped: bool = False
    repair_paused: bool = False
    breakers_open: int = 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pairs(raw: Mapping[Any, Any]) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for key, value in raw.items():
        first, _, second = _text(key).partition("|")
        found[(first, second)] = int(value)
    return found


def collect_health(client: redis.Redis, now: datetime) -> HealthSnapshot:
    """Read the figures: ready servers from the database, the rest from Redis.

    Call within `core.store.db.connection()`.
    """
    watched = Server.heartbeat_credential_hash.is_null(False).alias("watched")
    rows: Any = (
        Server.select(Server.id, Server.health, Server.breaker_until, watched)
        .where(Server.status == "ready")
        .tuples()
    )
    by_state = dict.fromkeys(HEALTH_STATES, 0)
    ready, watched_ids, breakers = [], set(), 0
    for server_id, health, breaker_until, is_watched in rows:
        by_state[health] = by_state.get(health, 0) + 1
        ready.append(server_id)
        if is_watched:
            watched_ids.add(server_id)
        if breaker_until is not None and breaker_until > now:
            breakers += 1
    store = HeartbeatStore(client)
    seen = store.seen()
    stamp = now.replace(tzinfo=UTC).timestamp()
    lags = [max(0.0, stamp - seen[i]) for i in ready if i in seen]
    with client.pipeline(transaction=False) as pipe:
        for key in (PROBES_KEY, REPAIRS_KEY, NOTIFICATIONS_KEY, RECOVERY_KEY):
            pipe.hgetall(key)
        probes, repairs, notifications, recovery = pipe.execute()
    herd, pause = HerdStore(client).read()
    return HealthSnapshot(
        by_state={str(k): v for k, v in by_state.items()},
        lags=lags,
        without_heartbeat=len(watched_ids.difference(seen)),
        heartbeats=store.results(),
        probes={_text(k): int(v) for k, v in probes.items()},
        repairs=_pairs(repairs),
        notifications=_pairs(notifications),
        recovery={_text(k): float(v) for k, v in recovery.items()},
        herd_tripped=herd.tripped,
        repair_paused=pause is not None,
        breakers_open=breakers,
    )


def render_health(out: Exposition, snap: HealthSnapshot) -> None:
    """Add the fleet-health families to `out`."""
    out.family("rachel_cloud_servers_health", "gauge", "Ready servers by health state.")
    for state, count in sorted(snap.by_state.items()):
        out.sample("rachel_cloud_servers_health", count, health=state)
    lags = list(snap.lags)
    out.histogram(
        "rachel_cloud_heartbeat_lag_seconds",
        "Ready servers by the age of their latest heartbeat.",
        LAG_BUCKETS,
        cumulative_counts(lags, LAG_BUCKETS),
        total=sum(lags),
        count=len(lags),
    )
    out.family("rachel_cloud_heartbeat_lag_max_seconds", "gauge", "The oldest latest heartbeat.")
    out.sample("rachel_cloud_heartbeat_lag_max_seconds", max(lags, default=0.0))
    out.family(
        "rachel_cloud_servers_without_heartbeat", "gauge", "Watched ready servers never heard from."
    )
    out.sample("rachel_cloud_servers_without_heartbeat", snap.without_heartbeat)
    out.family("rachel_cloud_heartbeats", "counter", "Heartbeats received, by answer.")
    for result, count in sorted(snap.heartbeats.items()):
        out.sample("rachel_cloud_heartbeats_total", count, result=result)
    out.family("rachel_cloud_probes", "counter", "SSH probes of silent servers, by outcome.")
    for outcome, count in sorted(snap.probes.items()):
        out.sample("rachel_cloud_probes_total", count, outcome=outcome)
    out.family("rachel_cloud_repairs", "counter", "Repair steps, by action and outcome.")
    for (action, outcome), count in sorted(snap.repairs.items()):
        out.sample("rachel_cloud_repairs_total", count, action=action, outcome=outcome)
    out.histogram(
        "rachel_cloud_detection_to_repair_seconds",
        "Time from a server turning unhealthy to healthy or degraded again.",
        RECOVERY_BUCKETS,
        [int(snap.recovery.get(repr(float(b)), 0)) for b in RECOVERY_BUCKETS],
        total=snap.recovery.get("sum", 0.0),
        count=int(snap.recovery.get("count", 0)),
    )
    out.family("rachel_cloud_notifications", "counter", "Owner and operator messages, by outcome.")
    for (to, outcome), count in sorted(snap.notifications.items()):
        out.sample("rachel_cloud_notifications_total", count, to=to, outcome=outcome)
    out.family("rachel_cloud_herd_guard_tripped", "gauge", "1 while the herd guard holds repairs.")
    out.sample("rachel_cloud_herd_guard_tripped", int(snap.herd_tripped))
    out.family("rachel_cloud_repair_paused", "gauge", "1 while an operator pauses repair.")
    out.sample("rachel_cloud_repair_paused", int(snap.repair_paused))
    out.family(
        "rachel_cloud_breakers_open", "gauge", "Ready servers whose circuit breaker is open."
    )
    out.sample("rachel_cloud_breakers_open", snap.breakers_open)
