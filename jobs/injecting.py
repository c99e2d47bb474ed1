"""Phase 3, injecting_secrets, and phase 4, finalize (ready).

Secrets are decrypted here, in memory, and nowhere else: the customer's
Telegram bot token and Claude credentials, and the server's SSH key. They
travel only inside the SSH session to the VPS, whose host key was pinned by
its callback.
"""

from __future__ import annotations

import logging

import redis

from core.cloud.ssh import SSHError, Target, inject
from core.domain.lifecycle import Status, transition
from core.errors import CryptoError
from core.platform.logs import server_logger
from core.store import rows
from core.store.db import connection
from core.store.models import Customer, Server
from core.store.vault import reveal
from jobs.context import JobContext, context
from jobs.outcomes import Requeue, fail, retry_or_fail
from jobs.queues import FINISH, enqueue_step, job_id, unschedule
from jobs.registry import JobFunction

log = logging.getLogger(__name__)


def _secrets_env(ctx: JobContext, server: Server) -> dict[str, str]:
    customer = rows.get_by_id(Customer, server.customer_id)
    values = {
        "TELEGRAM_BOT_TOKEN": reveal(ctx.keyring, customer, "telegram_bot_token"),
        "CLAUDE_CREDENTIALS": reveal(ctx.keyring, customer, "claude_credentials"),
    }
    missing = [k for k, v in values.items() if not v]
    if missing:
        raise CryptoError(f"customer {customer.external_id} has no {', '.join(missing)}")
    return {k: v for k, v in values.items() if v}


def inject_secrets(server_id: int) -> str:
    """RQ job: write the secrets file on the VPS, restart Rachel8, verify it runs."""
    ctx = context()
    with connection():
        server = rows.get(Server, server_id)
        if server is None or server.status != Status.INJECTING_SECRETS:
            return "skipped"
        slog = server_logger(log, server.id, "injecting_secrets", attempt=server.attempt)
        if not server.ipv4 or not server.host_key:
            fail(
                ctx,
                server.id,
                Status.INJECTING_SECRETS,
                "no address or pinned host key recorded; cannot connect safely",
            )
            return "failed"
        try:
            private_key = reveal(ctx.keyring, server, "ssh_private_key")
            if private_key is None:
                raise CryptoError("the server has no SSH key")
            env = _secrets_env(ctx, server)
        except CryptoError as exc:
            fail(ctx, server.id, Status.INJECTING_SECRETS, f"{exc.code}: {exc.message}")
            return "failed"
        target = Target(
            host=server.ipv4,
            port=ctx.settings.vps_ssh_port,
            host_key=server.host_key,
            private_key=private_key,
        )
        try:
            inject(target, env, timeout=ctx.settings.inject_timeout_seconds)
        except SSHError as exc:
            return retry_or_fail(ctx, server, Status.INJECTING_SECRETS, exc, _requeue(ctx, server))
        slog.info("secrets written to %s and Rachel8 restarted and active", server.ipv4)
        # Marked ready in this job: a job of its own for one UPDATE cost a queue
        # hop per provision (bench/provision.py). Should this worker die right
        # here, RQ runs the injection again (idempotent), then this.
        return _finalize(ctx, server)


def finalize(server_id: int) -> str:
    """RQ job: mark the server ready and record its provisioning time against the SLA.

    The injection job does this itself; the job remains for the sweeper, which
    resumes a server whose recorded job was a finalize of an earlier release.
    """
    ctx = context()
    with connection():
        server = rows.get(Server, server_id)
        if server is None or server.status != Status.INJECTING_SECRETS:
            return "skipped"
        return _finalize(ctx, server)


def _finalize(ctx: JobContext, server: Server) -> str:
    """Mark a server that has its secrets ready (a compare-and-set; idempotent).

    `server` is the row this job read (in injecting_secrets): not read again,
    since the compare-and-set refuses a server that has left that status.
    """
    now = ctx.clock.now()
    seconds = (now - server.created_at).total_seconds()
    sla = ctx.settings.sla_seconds
    verdict = "within" if seconds <= sla else "OVER"
    first_time = server.ready_at is None
    message = (
        f"ready: provisioned in {seconds:.1f}s ({verdict} the {sla:.0f}s SLA)"
        if first_time
        else "ready again: secrets re-injected"
    )
    changes: dict[str, object] = {"retries": 0, "last_error": None, "deadline_at": None}
    if first_time:
        changes["provisioning_seconds"] = seconds
    moved = transition(  # which logs the message: no line of our own
        server.id,
        Status.INJECTING_SECRETS,
        Status.READY,
        message=message,
        changes=changes,
        clock=ctx.clock,
        publish=ctx.publish,
    )
    if not moved:
        return "skipped"
    # The boot deadline of this attempt can no longer fire (the server left
    # cloud_init): drop its check rather than have a worker run a job per
    # server, minutes from now, to find nothing to do. Best effort: left in
    # place, the check runs and does nothing.
    try:
        unschedule(ctx.redis, FINISH, job_id(server.id, "boot-deadline", server.attempt))
    except redis.RedisError as exc:
        log.debug("server %s: boot deadline check left scheduled: %s", server.id, exc)
    return "ready"


def _requeue(ctx: JobContext, server: Server) -> Requeue:
    def requeue(retry: int, delay: float) -> None:
        enqueue_step(
            ctx.redis,
            FINISH,
            JobFunction.INJECT_SECRETS,
            server.id,
            "injecting_secrets",
            attempt=server.attempt,
            entry=server.status_changed_at,
            retry=retry,
            delay=delay,
        )

    return requeue
