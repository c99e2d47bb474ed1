"""Controllers for operations: liveness, readiness, Prometheus metrics (no auth)."""

from __future__ import annotations

import logging

import anyio
import redis
from litestar import Controller, Response, get
from litestar.concurrency import sync_to_thread

from core.domain import intake
from core.domain.health_metrics import collect_health
from core.domain.metrics import (
    WEBHOOK_RESULTS_KEY,
    Snapshot,
    collect_database,
    parse_webhook_results,
)
from core.domain.metrics import render as render_metrics
from core.domain.pool_metrics import collect_pool
from core.domain.rollout_metrics import collect_rollouts
from core.errors import RachelError, RedisUnavailable
from core.platform.clock import utcnow
from core.store import db as core_db
from core.store.db import connection
from webhook.context import Ctx
from webhook.errors import RequestRejected, responses
from webhook.structs import Health, Readiness

log = logging.getLogger(__name__)

CHECK_TIMEOUT_SECONDS = 3.0
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class OpsController(Controller):
    """Health and metrics for load balancers, orchestrators and Prometheus."""

    tags = ["operations"]  # noqa: RUF012 - Litestar's class attribute

    @get("/healthz", summary="Liveness", responses=responses(500))
    async def healthz(self) -> Health:
        """The process answers (it checks nothing else)."""
        return Health(status="ok")

    @get(
        "/readyz", summary="Readiness: database and Redis reachable", responses=responses(500, 503)
    )
    async def readyz(self, ctx: Ctx) -> Readiness:
        """200 when the database and Redis answer, 503 (naming what failed) otherwise."""
        checks = {"database": await _check_database(), "redis": await _check_redis(ctx)}
        failed = [f"{name}: {state}" for name, state in checks.items() if state != "ok"]
        if failed:
            raise RequestRejected("not ready: " + "; ".join(failed), code="not_ready", status=503)
        return Readiness(status="ready", checks=checks)

    @get(
        "/metrics",
        summary="Prometheus metrics",
        media_type=PROMETHEUS_TEXT,
        responses=responses(500, 503),
    )
    async def metrics(self, ctx: Ctx) -> Response[str]:
        """Servers by status and by health, provisioning durations, SLA hits and misses,
        webhook results, queue depths, workers, heartbeat lag and results, probes, repairs,
        detection-to-repair time, notifications, the herd guard and open circuit breakers,
        servers per Rachel8 commit and rollout progress, the warm pool and its idle cost,
        snapshot storage (Prometheus text format 0.0.4; `core.domain.health_metrics`,
        `core.domain.rollout_metrics` and `core.domain.pool_metrics` list them)."""
        await ctx.results.flush(ctx.aredis())  # this process's latest counts
        snapshot = await sync_to_thread(_snapshot, ctx)
        return Response(render_metrics(snapshot), media_type=PROMETHEUS_TEXT)


def _snapshot(ctx: Ctx) -> Snapshot:
    try:
        with connection():
            counts, durations = collect_database()
            waiting = intake.pending()
            health = collect_health(ctx.redis, utcnow())
            rollouts = collect_rollouts(ctx.redis)
            pool = collect_pool(ctx.settings.server_prices, ctx.settings.snapshot_price_gb_month)
        raw = ctx.redis.hgetall(WEBHOOK_RESULTS_KEY)
        depths = ctx.work.queue_depths(ctx.redis)
        workers = ctx.work.worker_count(ctx.redis)
    except redis.RedisError as exc:
        raise RedisUnavailable(f"Redis does not answer: {exc}") from exc
    return Snapshot(
        servers_by_status=counts,
        provisioning_seconds=durations,
        sla_seconds=ctx.settings.sla_seconds,
        webhook_results=parse_webhook_results(raw),
        queue_depths=depths,
        intake_pending=waiting,
        workers=workers,
        health=health,
        rollouts=rollouts,
        pool=pool,
    )


async def _check_database() -> str:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            await sync_to_thread(core_db.ping)
    except TimeoutError:
        return "timeout"
    except RachelError as exc:
        log.warning("readiness: %s", exc)
        return "unreachable"
    return "ok"


async def _check_redis(ctx: Ctx) -> str:
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            await ctx.aredis().ping()
    except TimeoutError:
        return "timeout"
    except Exception as exc:  # any client or socket error means "not ready"
        log.warning("readiness: Redis: %s", exc)
        return "unreachable"
    return "ok"
