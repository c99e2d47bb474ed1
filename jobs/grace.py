"""The grace enforcer: warn, then deprovision the servers of lapsed subscriptions.

Each run asks `core.grace.decide` about every customer who has a live server
and either a lapsed subscription or a deprovision pending on their timeline,
and carries out the answer:

- schedule: an Event on the server's timeline says when it will go;
- warn: `warned_at` is claimed by a compare-and-set (so two runs warn once),
  then the notifier tells the customer (failures are logged, never fatal);
- deprovision: the subscription is re-read (a renewal that just arrived
  wins), then `jobs.operator.deprovision` moves the server to deprovisioning
  by compare-and-set with the reason as its Event (forced for a server still
  provisioning); a second run, or a second scheduler, finds it deprovisioning
  and does nothing;
- cancel: the subscription is active again; an Event says the pending
  deprovision is cancelled.
"""

from __future__ import annotations

import logging

from core.domain.grace import (
    ACTIVE,
    EVENT_CANCELLED,
    EVENT_SCHEDULED,
    EVENT_WARNED,
    GRACE_KINDS,
    PENDING_KINDS,
    Action,
    Decision,
    GraceState,
    decide,
    warning_text,
)
from core.domain.lifecycle import LIVE, record_event
from core.domain.notify import Notifier, build_notifier
from core.platform.logs import server_logger
from core.platform.runs import RunSummary
from core.store.db import connection
from core.store.models import Customer, Event, Server, Subscription
from jobs import operator
from jobs.context import JobContext, context
from jobs.taskrun import task_run

log = logging.getLogger(__name__)

_LIVE = [status.value for status in LIVE]


def enforce_grace() -> str:
    """RQ job (cron): one grace enforcement pass."""
    ctx = context()
    with task_run(ctx.redis, "grace") as summary:
        if summary is None:
            return "skipped: already running"
        run(ctx, summary=summary)
        return summary.line()


def _pending(server: Server) -> bool:
    last = (
        Event.select(Event.kind)
        .where((Event.server == server.id) & (Event.kind.in_(GRACE_KINDS)))
        .order_by(Event.id.desc())
        .first()
    )
    return last is not None and last.kind in PENDING_KINDS


def _candidates() -> list[tuple[Subscription, Server]]:
    """(subscription, live server) of customers the enforcer must look at."""
    lapsed = (
        Subscription.select(Subscription, Server)
        .join(Server, on=(Server.customer == Subscription.customer), attr="server")
        .where((Subscription.status != ACTIVE) & Server.status.in_(_LIVE))
    )
    with_grace_events = Event.select(Event.server).where(Event.kind.in_(GRACE_KINDS))
    renewed = (
        Subscription.select(Subscription, Server)
        .join(Server, on=(Server.customer == Subscription.customer), attr="server")
        .where(
            (Subscription.status == ACTIVE)
            & Server.status.in_(_LIVE)
            & Server.id.in_(with_grace_events)
        )
    )
    pairs = []
    for query in (lapsed, renewed):
        for sub in query:
            pairs.append((sub, getattr(sub, "server")))  # noqa: B009 - peewee's join attr
    return pairs


def run(
    ctx: JobContext, *, notifier: Notifier | None = None, summary: RunSummary | None = None
) -> RunSummary:
    """One pass over every candidate; returns what it found and did."""
    summary = summary if summary is not None else RunSummary("grace")
    notifier = notifier or build_notifier(ctx.settings, ctx.keyring)
    now = ctx.clock.now()
    with connection():
        for sub, server in _candidates():
            state = GraceState(
                status=sub.status,
                lapsed_at=sub.lapsed_at,
                grace_until=sub.grace_until,
                warned_at=sub.warned_at,
                server_status=server.status,
                pending=_pending(server),
            )
            decision = decide(
                state,
                now,
                grace_seconds=ctx.settings.grace_period_seconds,
                warning_seconds=ctx.settings.grace_warning_seconds,
            )
            if decision.action == Action.NOTHING:
                continue
            summary.found[decision.action.value] += 1
            try:
                done = _act(ctx, notifier, sub, server, decision)
            except Exception as exc:  # one customer's trouble must not stop the pass
                summary.errors += 1
                server_logger(log, server.id, server.status).error(
                    "grace: could not %s: %s", decision.action, exc
                )
                continue
            if done:
                summary.acted[decision.action.value] += 1
                summary.details.append(f"server {server.id}: {done}")
    return summary


def _act(
    ctx: JobContext, notifier: Notifier, sub: Subscription, server: Server, decision: Decision
) -> str | None:
    action = decision.action
    if action in (Action.SCHEDULE, Action.CANCEL):
        kind = EVENT_SCHEDULED if action == Action.SCHEDULE else EVENT_CANCELLED
        record_event(server.id, kind, decision.reason, actor="cron", clock=ctx.clock)
        server_logger(log, server.id, server.status).info("grace: %s", decision.reason)
        return decision.reason
    if action == Action.WARN:
        return _warn(ctx, notifier, sub, server, decision)
    if action == Action.DEPROVISION:
        return _deprovision(ctx, sub, server, decision)
    return None


def _warn(
    ctx: JobContext, notifier: Notifier, sub: Subscription, server: Server, decision: Decision
) -> str | None:
    slog = server_logger(log, server.id, server.status)
    claimed = (
        Subscription.update(warned_at=ctx.clock.now())
        .where(
            (Subscription.id == sub.id)
            & Subscription.warned_at.is_null()
            & (Subscription.status == sub.status)
        )
        .execute()
    )
    if not claimed:
        return None  # another run warned, or the subscription changed
    assert decision.deadline is not None
    customer = Customer.get_by_id(getattr(sub, "customer_id"))  # noqa: B009
    try:
        detail = notifier.notify(customer, warning_text(decision.deadline)).detail
    except Exception as exc:  # a notifier must not stop enforcement
        slog.warning("grace: the notifier failed: %s", type(exc).__name__)
        detail = f"notifier failed ({type(exc).__name__})"
    message = f"{decision.reason} ({detail})"
    record_event(server.id, EVENT_WARNED, message, actor="cron", clock=ctx.clock)
    slog.warning("grace: %s", message)
    return message


def _deprovision(
    ctx: JobContext, sub: Subscription, server: Server, decision: Decision
) -> str | None:
    slog = server_logger(log, server.id, server.status)
    if Subscription.get_by_id(sub.id).status == ACTIVE:
        slog.info("grace: subscription renewed just now; not deprovisioning")
        return None
    try:
        outcome = operator.deprovision(
            ctx.redis,
            server.id,
            "cron",
            force=True,
            reason=f"grace enforcer: {decision.reason}",
            clock=ctx.clock,
        )
    except operator.OperatorError as exc:
        slog.info("grace: deprovision not needed: %s", exc)
        return None
    slog.warning("grace: %s; %s", decision.reason, outcome.message)
    return outcome.message
