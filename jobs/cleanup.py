"""Cleanup after a failure: delete the failed server's VPS, so it costs nothing.

The row stays `failed` (with its error and failed phase) so an operator can
read what happened and retry; only the provider-side objects go. Cleanup acts
only on a server that is still failed and only on the VPS it recorded or that
carries its label; a 404 counts as done.
"""

from __future__ import annotations

import logging

from core.cloud.provider import HetznerError
from core.domain import backoff
from core.domain.lifecycle import Status, record_event
from core.platform.logs import server_logger
from core.store import rows
from core.store.db import connection
from core.store.models import Server
from jobs.context import context
from jobs.enqueue import enqueue_cleanup
from jobs.outcomes import describe

log = logging.getLogger(__name__)


def cleanup(server_id: int, retry: int = 0) -> str:
    """RQ job: delete the VPS of a failed server."""
    ctx = context()
    with connection():
        server = rows.get(Server, server_id)
        if server is None or server.status != Status.FAILED:
            return "skipped"
        slog = server_logger(log, server.id, "cleanup", attempt=server.attempt)
        if server.provider_id is None and server.create_requested_at is None:
            return "nothing to clean"
        try:
            provider_id = server.provider_id
            if provider_id is None:
                found = ctx.hetzner.find_server(server.id)
                provider_id = found.id if found is not None else None
            deleted = ctx.hetzner.delete_server(provider_id) if provider_id else False
        except HetznerError as exc:
            if not exc.transient:
                record_event(
                    server.id,
                    "error",
                    f"cleanup: {describe(exc)}; the reconciler will report the VPS if it remains",
                    clock=ctx.clock,
                )
                slog.error("cleanup failed permanently: %s", describe(exc))
                return "gave up"
            wait = backoff.delay(
                retry, ctx.settings.retry_base_seconds, floor=exc.retry_after or 0.0
            )
            slog.warning("cleanup: %s; retrying in %.1fs", describe(exc), wait)
            enqueue_cleanup(ctx.redis, server, retry=retry + 1, delay=wait)
            return "retrying"
        # Only clear what we deleted, and only if nobody retried the server meanwhile.
        (
            Server.update(
                provider_id=None, ipv4=None, ipv6=None, host_key=None, create_requested_at=None
            )
            .where((Server.id == server.id) & (Server.status == Status.FAILED))
            .execute()
        )
        what = f"deleted Hetzner server {provider_id}" if deleted else "the VPS was already gone"
        record_event(server.id, "cleanup", f"cleanup: {what}", clock=ctx.clock)
        slog.info("cleanup: %s; the server stays failed until retried", what)
        return what
