"""Phase 3, injecting_secrets, and phase 4, ready once Rachel8 stays up.

Secrets are decrypted here, in memory, and nowhere else: the customer's
Telegram bot token, Claude credentials and speech-to-text key, and the
server's SSH key. They travel only inside the SSH session to the VPS, whose
host key was pinned by its callback.

The injection writes Rachel8's `.env` and credentials and restarts it
(`core.cloud.injection`), and gives the VPS's health agent a new heartbeat
credential: its hash is saved with the commit (the same compare-and-set), and
armed in Redis for heartbeats from the server's address once that committed
(`core.domain.heartbeats`). `finalize` looks again after the settle period
(RACHEL_SERVICE_SETTLE) and marks the server ready only if Rachel8 is still
running and was never restarted meanwhile. No worker waits for that: the look
is a job scheduled for then.
"""

from __future__ import annotations

import logging

from core.cloud import vps_contract as vps
from core.cloud.injection import AgentConfig, inject
from core.cloud.rachel8 import ConfigError
from core.cloud.rachel8_unit import SERVING_MARK, wait_serving
from core.cloud.ssh import SSHError, Target
from core.domain import heartbeats
from core.domain.customers import IncompleteConfig, rachel8_config
from core.domain.lifecycle import Status, record_event, transition
from core.domain.vps_access import target_for
from core.errors import CryptoError
from core.platform.logs import server_logger
from core.store import rows
from core.store.db import connection
from core.store.models import Customer, Server
from jobs.context import JobContext, context
from jobs.enqueue import drop_boot_deadline
from jobs.outcomes import Requeue, fail, retry_or_fail
from jobs.queues import FINISH, enqueue_step
from jobs.registry import JobFunction

log = logging.getLogger(__name__)

#: When the finalize first looks after an injection. Rachel8 serves its bot
#: about a second after its start (Bun's start, grammY's getMe and
#: deleteWebhook); the look then goes on every half second in one session.
FIRST_LOOK_SECONDS = 1.0


def _target_or_fail(ctx: JobContext, server: Server) -> Target | None:
    """Where to connect, or None after failing the server that has no safe way in."""
    try:
        target = target_for(server, ctx.keyring, ctx.settings)
    except CryptoError as exc:
        fail(ctx, server.id, Status.INJECTING_SECRETS, f"{exc.code}: {exc.message}")
        return None
    if target is None:
        fail(
            ctx,
            server.id,
            Status.INJECTING_SECRETS,
            "no address or pinned host key recorded; cannot connect safely",
        )
    return target


def _layout(ctx: JobContext) -> vps.Layout:
    return vps.Layout(ctx.settings.rachel8_user)


def inject_secrets(server_id: int) -> str:
    """RQ job: write Rachel8's configuration on the VPS, restart it, check it started."""
    ctx = context()
    with connection():
        server = rows.get(Server, server_id)
        if server is None or server.status != Status.INJECTING_SECRETS:
            return "skipped"
        slog = server_logger(log, server.id, "injecting_secrets", attempt=server.attempt)
        target = _target_or_fail(ctx, server)
        if target is None:
            return "failed"
        try:
            customer = rows.get_by_id(Customer, server.customer_id)
            config = rachel8_config(ctx.keyring, customer)
        except (CryptoError, IncompleteConfig, ConfigError) as exc:
            fail(ctx, server.id, Status.INJECTING_SECRETS, f"{exc.code}: {exc.message}")
            return "failed"
        credential, credential_hash = heartbeats.new_credential()
        agent = AgentConfig(
            heartbeat_url=heartbeats.heartbeat_url(ctx.settings.public_url, server.id),
            credential=credential,
            telegram_api_url=ctx.settings.telegram_api_url,
        )
        try:
            injected = inject(
                target,
                config,
                agent=agent,
                layout=_layout(ctx),
                timeout=ctx.settings.inject_timeout_seconds,
            )
        except SSHError as exc:
            return retry_or_fail(ctx, server, Status.INJECTING_SECRETS, exc, _requeue(ctx, server))
        saved = (
            Server.update(rachel8_commit=injected.commit, heartbeat_credential_hash=credential_hash)
            .where((Server.id == server.id) & (Server.status == Status.INJECTING_SECRETS))
            .execute()
        )
        if saved:
            # After the commit (autocommit): the web app's fallback, reading the
            # row when Redis has no registration, finds the same hash.
            heartbeats.register(ctx.redis, server.id, credential_hash, target.host)
        if injected.agent_error is not None:
            record_event(
                server.id,
                "agent",
                f"the health agent did not start: {injected.agent_error}; no heartbeats, "
                "so its health rests on SSH probes",
                clock=ctx.clock,
            )
            slog.warning("health agent not started on %s: %s", server.ipv4, injected.agent_error)
        if injected.kept_vps_credentials:
            record_event(
                server.id,
                "credentials",
                "kept the Claude credentials on the VPS: they are newer than ours "
                "(the VPS refreshed them itself)",
                clock=ctx.clock,
            )
        settle = ctx.settings.service_settle_seconds
        look = min(settle, FIRST_LOOK_SECONDS)
        slog.info(
            "Rachel8 %s configured on %s and started (%s); %s",
            injected.commit[:12],
            server.ipv4,
            injected.state.describe(),
            f"looking again in {look:.0f}s, ready once it serves its bot (within {settle:.0f}s)"
            if settle > 0
            else "marking ready",
        )
        if settle <= 0:
            # Marked ready in this job: a job of its own for one UPDATE cost a
            # queue hop per provision (bench/provision.py). Should this worker die
            # right here, RQ runs the injection again (idempotent), then this.
            return _finalize(ctx, server)
        enqueue_step(
            ctx.redis,
            FINISH,
            JobFunction.FINALIZE,
            server.id,
            "finalize",
            attempt=server.attempt,
            entry=server.status_changed_at,
            delay=look,
        )
        return "settling"


def finalize(server_id: int) -> str:
    """RQ job: mark the server ready once Rachel8 serves its bot, or stayed up.

    Ready as soon as Rachel8's current process logged that it serves its bot
    (`core.cloud.rachel8_unit.SERVING_MARK`) with no automatic restart since
    the injection; without that line, once it stayed up until the settle
    period (RACHEL_SERVICE_SETTLE, from entering the phase) ended: the worker
    looks every half second until then, over one SSH session. Also what the
    sweeper resumes for a server whose recorded job was a finalize.
    """
    ctx = context()
    with connection():
        server = rows.get(Server, server_id)
        if server is None or server.status != Status.INJECTING_SECRETS:
            return "skipped"
        if ctx.settings.service_settle_seconds > 0:
            target = _target_or_fail(ctx, server)
            if target is None:
                return "failed"
            settle = ctx.settings.service_settle_seconds
            waited = (ctx.clock.now() - server.status_changed_at).total_seconds()
            try:
                state, serves = wait_serving(
                    target,
                    # Within [0, settle] whatever the clocks say (the row's and this host's).
                    within=min(settle, max(0.0, settle - waited)),
                    timeout=ctx.settings.inject_timeout_seconds,
                )
            except SSHError as exc:
                requeue = _requeue(ctx, server, JobFunction.FINALIZE, "finalize")
                return retry_or_fail(ctx, server, Status.INJECTING_SECRETS, exc, requeue)
            slog = server_logger(log, server.id, "injecting_secrets", attempt=server.attempt)
            if serves:
                slog.info("Rachel8 serves its bot on %s (%s)", server.ipv4, state.describe())
            else:
                record_event(
                    server.id,
                    "service",
                    "Rachel8 stayed up over the settle period but never logged that it serves "
                    f"its bot ({SERVING_MARK!r}); ready on its staying up",
                    clock=ctx.clock,
                )
                slog.warning(
                    "Rachel8 stayed up on %s over the settle period (%s) but did not log that "
                    "it serves its bot",
                    server.ipv4,
                    state.describe(),
                )
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
    drop_boot_deadline(ctx.redis, server)
    return "ready"


def _requeue(
    ctx: JobContext,
    server: Server,
    func: JobFunction = JobFunction.INJECT_SECRETS,
    step: str = "injecting_secrets",
) -> Requeue:
    def requeue(retry: int, delay: float) -> None:
        enqueue_step(
            ctx.redis,
            FINISH,
            func,
            server.id,
            step,
            attempt=server.attempt,
            entry=server.status_changed_at,
            retry=retry,
            delay=delay,
        )

    return requeue
