"""The public enqueue helpers: how the webhook app, the CLI and the TUI start work.

Each takes a Redis connection and a server id, and is safe to call twice.
Call them after the database change that made the work due has committed.
"""

from __future__ import annotations

import functools

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


@functools.lru_cache(maxsize=1)
def callback_dispatch() -> str:
    """This process's RACHEL_CALLBACK_DISPATCH (`enqueue` or `poll`), read once."""
    return Settings.load().callback_dispatch


def after_callback(
    connection: redis.Redis, server: Server, *, settings: Settings | None = None
) -> str | None:
    """Queue secret injection once cloud-init has called back.

    With RACHEL_CALLBACK_DISPATCH=poll (the benchmarks' baseline) nothing is
    queued here: `jobs.callback_poll` finds the server on its next pass.

    Returns:
        The job id, or None when the poller will queue it.
    """
    mode = settings.callback_dispatch if settings is not None else callback_dispatch()
    if mode == "poll":
        return None
    return enqueue_injection(connection, server)


def enqueue_injection(connection: redis.Redis, server: Server) -> str:
    """Queue secret injection of a server in injecting_secrets (idempotent)."""
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
