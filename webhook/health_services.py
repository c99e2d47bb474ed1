"""The customer API's fleet-health additions, composed from `core` (no Litestar here).

- `health_of`: a server's health, 30-day uptime (`core.domain.uptime`) and
  last heartbeat (`core.domain.heartbeats`), for its status.
- `restart`, `logs`: asked of the VPS over SSH (`core.domain.vps_requests`),
  in a worker thread for up to OPS_TIMEOUT_SECONDS; at most
  MAX_VPS_REQUESTS at once per process, one restart per server at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import redis

from core.domain import vps_requests
from core.domain.events import publish
from core.domain.health import HEALTH_STATES, HealthState
from core.domain.heartbeats import HeartbeatStore
from core.domain.lifecycle import Status
from core.domain.uptime import WINDOW, uptime
from core.errors import RedisUnavailable
from core.platform.clock import utcnow
from core.security.redaction import redact
from core.store.models import Event, Server
from webhook.context import WebContext
from webhook.errors import RequestRejected
from webhook.structs import HealthInfo, HealthStateName, LogLines, Restarted, ServiceStatus

#: SSH requests one web process runs at once (each holds a worker thread).
MAX_VPS_REQUESTS = 8
RETRY_AFTER_SECONDS = 5
HEALTH_KIND = "health"


@dataclass(frozen=True)
class HealthView:
    """What the status shows of a server's health."""

    health: HealthInfo
    uptime_30d_percent: float | None
    last_heartbeat_at: datetime | None


def health_of(ctx: WebContext, server: Server) -> HealthView:
    """The server's health, 30-day uptime and last heartbeat (inside a connection).

    Raises:
        RedisUnavailable: the heartbeats cannot be read.
    """
    try:
        latest = HeartbeatStore(ctx.redis).latest([server.id]).get(server.id)
    except redis.RedisError as exc:
        raise RedisUnavailable(f"Redis does not answer: {exc}") from exc
    changed = server.health_changed_at
    state = server.health if server.health in HEALTH_STATES else HealthState.UNKNOWN
    return HealthView(
        health=HealthInfo(
            state=cast(HealthStateName, str(state)),
            reason=redact(server.health_reason) if server.health_reason else None,
            since=changed.replace(tzinfo=UTC) if changed is not None else None,
        ),
        uptime_30d_percent=uptime_percent(server),
        last_heartbeat_at=(
            datetime.fromtimestamp(latest.received_at, UTC) if latest is not None else None
        ),
    )


def uptime_percent(server: Server, now: datetime | None = None) -> float | None:
    """The server's uptime over the last 30 days, to 3 decimals (None: not measured).

    The window ends now for a ready server, else when it left its last status
    (a deprovisioned server's last health is not counted on forever).
    """
    end = now or utcnow()
    if server.status != Status.READY and server.status_changed_at is not None:
        end = min(end, server.status_changed_at)
    start = end - WINDOW
    health = (Event.server == server.id) & (Event.kind == HEALTH_KIND)
    columns = (Event.at, Event.to_status)
    within = (
        Event.select(*columns)
        .where(health & (Event.at >= start) & (Event.at <= end))
        .order_by(Event.at, Event.id)
    )
    before = (
        Event.select(*columns)
        .where(health & (Event.at < start))
        .order_by(Event.at.desc(), Event.id.desc())
        .limit(1)
    )
    changes = [(e.at, e.to_status or "") for e in [*before, *within]]
    percent = uptime(changes, end=end).percent
    return None if percent is None else round(percent, 3)


_slots = threading.BoundedSemaphore(MAX_VPS_REQUESTS)
_restarting: set[int] = set()
_restarting_lock = threading.Lock()


@contextmanager
def _vps_slot() -> Iterator[None]:
    if not _slots.acquire(blocking=False):
        raise RequestRejected(
            "too many VPS requests in progress; retry shortly",
            code="busy",
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    try:
        yield
    finally:
        _slots.release()


@contextmanager
def _one_restart(server_id: int) -> Iterator[None]:
    with _restarting_lock:
        if server_id in _restarting:
            raise RequestRejected(
                f"server {server_id} is being restarted already",
                code="restart_in_progress",
                status=409,
            )
        _restarting.add(server_id)
    try:
        yield
    finally:
        with _restarting_lock:
            _restarting.discard(server_id)


def restart(ctx: WebContext, server_id: int) -> Restarted:
    """Restart the customer's Rachel8 (an Event, actor `customer`); the unit's state.

    Raises:
        VpsRequestRefused: 404 no such server, 409 not ready.
        VpsRequestFailed: 502 the VPS cannot be reached, or systemctl failed.
        RequestRejected: 409 a restart of this server is running, 503 too many at once.
    """
    with _one_restart(server_id), _vps_slot():
        state = vps_requests.restart(
            server_id,
            ctx.keyring,
            ctx.settings,
            actor="customer",
            publish=lambda payload: publish(ctx.redis, payload),
        )
    return Restarted(
        server_id=server_id,
        service=ServiceStatus(
            active=state.active,
            sub=state.sub,
            restarts=state.restarts,
            result=state.result,
            exit_status=state.exit_status,
            running=state.running,
        ),
    )


def logs(ctx: WebContext, server_id: int, lines: int) -> LogLines:
    """The last `lines` lines of Rachel8's journal, redacted (the customer's secrets too).

    Raises:
        VpsRequestRefused, VpsRequestFailed, RequestRejected: as `restart`.
    """
    with _vps_slot():
        found = vps_requests.logs(server_id, lines, ctx.keyring, ctx.settings)
    return LogLines(server_id=server_id, lines=found)
