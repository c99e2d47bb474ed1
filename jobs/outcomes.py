"""What happens after a phase fails: retry with backoff, or fail and clean up.

Transient errors (429, 5xx, `locked`, `conflict`, network, SSH unreachable)
are retried with exponential backoff and full jitter, up to the configured
number of retries per phase; each retry is an Event. A permanent error, a
phase out of retries, or a phase past its time limit (RACHEL_PHASE_LIMITS,
enforced here whatever RACHEL_RECONCILE_APPLY says, rate-limit waits included)
fails the server (compare-and-set, with the error and the failed phase
recorded) and queues its cleanup.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from core.domain import backoff
from core.domain.lifecycle import Status, record_event, transition
from core.errors import RachelError
from core.platform.logs import server_logger
from core.security.redaction import redact
from core.store.models import Server
from jobs.context import JobContext
from jobs.enqueue import enqueue_cleanup

log = logging.getLogger(__name__)

Requeue = Callable[[int, float], None]  # (retry number, delay seconds)


def describe(exc: BaseException) -> str:
    """An operator-facing one-liner for an error (redacted, bounded)."""
    if isinstance(exc, RachelError):
        text = f"{exc.code}: {exc.message}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return redact(text)[:2000]


def retry_or_fail(
    ctx: JobContext, server: Server, phase: Status, exc: BaseException, requeue: Requeue
) -> str:
    """Retry `phase` later, or fail the server. Returns what was done, for the job result."""
    slog = server_logger(log, server.id, phase.value, attempt=server.attempt)
    message = describe(exc)
    transient = bool(getattr(exc, "transient", False))
    settings = ctx.settings
    limit = settings.phase_limit(phase.value)
    waited = max(0.0, (ctx.clock.now() - server.status_changed_at).total_seconds())
    decision = backoff.decide(
        server.retries,
        server.throttled,
        settings.phase_retries,
        transient=transient,
        code=getattr(exc, "code", None),
        base=settings.retry_base_seconds,
        hint=float(getattr(exc, "retry_after", 0.0) or 0.0),
        waited=waited,
        limit=limit,
    )
    if decision.retry:
        retry, wait = server.retries + 1, decision.wait
        updated = (
            Server.update(
                retries=retry,
                throttled=server.throttled + int(decision.throttled),
                last_error=message,
            )
            .where((Server.id == server.id) & (Server.status == phase.value))
            .execute()
        )
        if not updated:
            slog.info("not retrying: the server left %s meanwhile", phase)
            return "superseded"
        what = retry_words(decision, settings.phase_retries)
        record_event(server.id, "retry", f"{phase}: {message}; {what}", clock=ctx.clock)
        slog.warning("%s; %s", message, what)
        requeue(retry, wait)
        return f"retry {retry} in {wait:.1f}s"
    if decision.past_limit:
        why = (
            f"past the {phase} limit of {limit:.0f}s after {waited:.0f}s, "
            f"{decision.used} retries and {server.throttled} rate-limit waits"
        )
    elif not transient:
        why = "permanent error"
    else:
        why = f"out of retries ({settings.phase_retries})"
    fail(ctx, server.id, phase, f"{message} ({why})")
    return "failed"


def retry_words(decision: backoff.Decision, limit: int) -> str:
    """How a retry reads in an Event and a log line."""
    if decision.throttled:
        return (
            f"rate limited: trying again in {decision.wait:.1f}s "
            f"(not counted; {decision.used} of {limit} retries used)"
        )
    return f"retry {decision.used} of {limit} in {decision.wait:.1f}s"


def fail(
    ctx: JobContext, server_id: int, phase: Status, message: str, actor: str = "system"
) -> bool:
    """Fail a server in `phase` and queue its cleanup; False if it had left `phase`."""
    moved = transition(
        server_id,
        phase,
        Status.FAILED,
        message=f"{phase} failed: {message}",
        actor=actor,
        changes={"last_error": message, "failed_phase": phase.value, "deadline_at": None},
        clock=ctx.clock,
        publish=ctx.publish,
    )
    if moved:
        server_logger(log, server_id, phase.value).error(
            "failed: %s; cleanup queued, retry allowed (rachel-cloud retry %s)", message, server_id
        )
        enqueue_cleanup(ctx.redis, Server.get_by_id(server_id))
    return moved
