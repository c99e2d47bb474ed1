"""Deprovisioning: delete the VPS; the row becomes deleted when Hetzner agrees.

Every way into deprovisioning (an operator, the grace enforcer, the CLI and
the TUI) ends in this job, so it is where the server's heartbeat credential
is revoked, first: a server on its way out is no longer watched, and the web
app's fallback never re-arms a deprovisioning or deleted server's credential.
A deprovision wins over a Rachel8 update: the update job looks again before
it switches and gives up, and the deleted server's claim is cleared here.
A 404 is success (already gone). Transient errors retry with backoff; after
the last retry the server stays in deprovisioning with its error, where the
sweeper and the reconciler find it.
"""

from __future__ import annotations

import logging

from core.cloud.provider import HetznerError
from core.domain import backoff, heartbeats
from core.domain.lifecycle import Status, record_event, transition
from core.platform.logs import server_logger
from core.store import rows
from core.store.db import connection
from core.store.models import Server
from jobs.context import JobContext, context
from jobs.outcomes import describe, retry_words
from jobs.queues import DEPROVISION, enqueue_step
from jobs.registry import JobFunction

log = logging.getLogger(__name__)


def deprovision(server_id: int) -> str:
    """RQ job: delete a deprovisioning server's VPS and mark the server deleted."""
    ctx = context()
    with connection():
        server = rows.get(Server, server_id)
        if server is None or server.status != Status.DEPROVISIONING:
            return "skipped"
        slog = server_logger(log, server.id, "deprovisioning")
        heartbeats.revoke(ctx.redis, server.id)
        try:
            provider_id = server.provider_id
            if provider_id is None and server.create_requested_at is not None:
                found = ctx.hetzner.find_server(server.id)
                provider_id = found.id if found is not None else None
            deleted = ctx.hetzner.delete_server(provider_id) if provider_id else False
        except HetznerError as exc:
            return _retry(ctx, server, exc)
        what = (
            f"deleted Hetzner server {provider_id}"
            if deleted
            else "no VPS left on Hetzner"
            if provider_id is None
            else f"Hetzner server {provider_id} was already gone"
        )
        moved = transition(
            server.id,
            Status.DEPROVISIONING,
            Status.DELETED,
            message=what,
            changes={
                "retries": 0,
                "last_error": None,
                "deadline_at": None,
                "heartbeat_credential_hash": None,
                # Not watched any more: a deleted server has no health to show.
                "health": "unknown",
                "health_reason": None,
                # A deprovision wins over a Rachel8 update (`jobs.update` gives up).
                "update_claim": None,
                "update_claimed_at": None,
            },
            clock=ctx.clock,
            publish=ctx.publish,
        )
        if moved:
            slog.info("deleted: %s", what)
        return "deleted" if moved else "skipped"


def _retry(ctx: JobContext, server: Server, exc: HetznerError) -> str:
    slog = server_logger(log, server.id, "deprovisioning")
    message = describe(exc)
    retries = ctx.settings.phase_retries
    decision = backoff.decide(
        server.retries,
        server.throttled,
        retries,
        transient=exc.transient,
        code=exc.code,
        base=ctx.settings.retry_base_seconds,
        hint=exc.retry_after or 0.0,
    )
    if not decision.retry:
        Server.update(last_error=message).where(Server.id == server.id).execute()
        record_event(
            server.id,
            "error",
            f"deprovisioning: {message}; left for the reconciler "
            "(rachel-cloud deprovision --force to try again)",
            clock=ctx.clock,
        )
        slog.error("deprovisioning stopped: %s; the server stays in deprovisioning", message)
        return "stuck"
    retry, wait = server.retries + 1, decision.wait
    Server.update(
        retries=retry, throttled=server.throttled + int(decision.throttled), last_error=message
    ).where(Server.id == server.id).execute()
    what = retry_words(decision, retries)
    record_event(server.id, "retry", f"deprovisioning: {message}; {what}", clock=ctx.clock)
    slog.warning("%s; %s", message, what)
    enqueue_step(
        ctx.redis,
        DEPROVISION,
        JobFunction.DEPROVISION,
        server.id,
        "deprovisioning",
        attempt=server.attempt,
        entry=server.status_changed_at,
        retry=retry,
        delay=wait,
    )
    return f"retry {retry}"
