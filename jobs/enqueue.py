"""The public enqueue helpers: how the webhook app, the CLI and the TUI start work.

Each takes a Redis connection and a server id, and is safe to call twice.
Call them after the database change that made the work due has committed.
"""

from __future__ import annotations

import redis
from rq.rate_limit import RateLimit

from core.models import Server
from core.settings import Settings
from jobs.queues import DEPROVISION, FINISH, START, enqueue_step


def create_rate_limit(settings: Settings) -> RateLimit:
    """At most `create_concurrency` creations in flight per Hetzner project."""
    project = "sim" if settings.uses_simulator else "hcloud"
    return RateLimit(key=f"rachel-cloud:create:{project}", concurrency=settings.create_concurrency)


def start_provisioning(connection: redis.Redis, settings: Settings, server: Server) -> str:
    """Queue the creating phase of a pending (or retried) server."""
    return enqueue_step(
        connection,
        START,
        "jobs.creating.create_server",
        server.id,
        "creating",
        attempt=server.attempt,
        entry=server.status_changed_at,
        retry=server.retries,
        rate_limit=create_rate_limit(settings),
    )


def after_callback(connection: redis.Redis, server: Server) -> str:
    """Queue secret injection once cloud-init has called back."""
    return enqueue_step(
        connection,
        FINISH,
        "jobs.injecting.inject_secrets",
        server.id,
        "injecting_secrets",
        attempt=server.attempt,
        entry=server.status_changed_at,
        retry=server.retries,
    )


def start_deprovision(connection: redis.Redis, server: Server) -> str:
    """Queue the deletion of a server that is in deprovisioning."""
    return enqueue_step(
        connection,
        DEPROVISION,
        "jobs.deprovisioning.deprovision",
        server.id,
        "deprovisioning",
        attempt=server.attempt,
        entry=server.status_changed_at,
        retry=server.retries,
    )
