"""Telling people: the owner through their own bot, operators through their webhook.

- `tell_owner`: the assistant is down (once per RACHEL_REPAIR_COOLDOWN, never
  while the herd guard holds: a herd is our incident, not each owner's) or back
  (only after a "down" was sent). `Server.owner_notified_down_at` is claimed by
  compare-and-set before the message goes out, so two jobs send it once;
- `alert_operators`: one JSON POST to RACHEL_OPERATOR_WEBHOOK_URL (logged only
  when it is unset).

Each records an Event (kind `notify`) with what was said to whom, and whether
it got there, and counts it (`rachel_cloud_notifications_total`). Neither
raises for a failed delivery: it is logged, and the health of the server is
what it is.
"""

from __future__ import annotations

import logging
from datetime import datetime

from core.domain.health import HealthState, Problem
from core.domain.health_metrics import count_notification
from core.domain.health_store import HealthMemory
from core.domain.herd import HerdStore, held
from core.domain.lifecycle import Status, record_event
from core.domain.notify import (
    OWNER_BACK_TEXT,
    Delivery,
    OperatorAlert,
    OperatorAlerts,
    build_notifier,
    owner_chat,
    owner_down_text,
)
from core.platform.logs import server_logger
from core.store import rows
from core.store.db import connection
from core.store.models import Customer, Event, Server
from jobs.context import JobContext, context

log = logging.getLogger(__name__)

EVENT_KIND = "notify"
_UP = (HealthState.HEALTHY.value, HealthState.DEGRADED.value)


def tell_owner(server_id: int, what: str, problem: str) -> str:
    """RQ job: tell a server's owner their assistant is `down` (for `problem`) or `back`."""
    ctx = context()
    with connection():
        server = rows.get(Server, server_id)
        if server is None or server.status != Status.READY:
            return "skipped: not ready"
        if what == "down":
            return _down(ctx, server, Problem(problem))
        if what == "back":
            return _back(ctx, server)
        raise ValueError(f"tell_owner: what must be down or back, got {what!r}")


def _down(ctx: JobContext, server: Server, problem: Problem) -> str:
    slog = server_logger(log, server.id, "health")
    if server.health != HealthState.UNHEALTHY:
        return "skipped: no longer unhealthy"
    herd, pause = HerdStore(ctx.redis).read()
    if herd.tripped:
        count_notification(ctx.redis, "owner", "skipped")
        slog.info("owner not told: the herd guard holds (operators are alerted instead)")
        return "skipped: the herd guard holds"
    now = ctx.clock.now()
    claimed = (
        Server.update(owner_notified_down_at=now)
        .where((Server.id == server.id) & Server.owner_notified_down_at.is_null())
        .execute()
    )
    if not claimed:
        return "skipped: already told"
    cooldown = ctx.settings.repair_cooldown_seconds
    if HealthMemory(ctx.redis).owner_told_recently(server.id, cooldown):
        _unclaim(server, now)
        count_notification(ctx.redis, "owner", "skipped")
        slog.info("owner not told again: told less than %.0fs ago", cooldown)
        return "skipped: told within the cooldown"
    repairing = (
        ctx.settings.repair_enabled
        and held(herd, pause) is None
        and (server.breaker_until is None or server.breaker_until <= now)
    )
    delivery = _send(ctx, server, owner_down_text(problem, repairing=repairing))
    if not delivery.sent:
        # Not told: no "back" for it either; the cooldown still spaces the attempts.
        _unclaim(server, now)
    _record(ctx, server, f"the owner: their assistant is down ({problem.value})", delivery)
    return delivery.detail


def _unclaim(server: Server, claimed_at: datetime) -> None:
    Server.update(owner_notified_down_at=None).where(
        (Server.id == server.id) & (Server.owner_notified_down_at == claimed_at)
    ).execute()


def _back(ctx: JobContext, server: Server) -> str:
    claimed = (
        Server.update(owner_notified_down_at=None)
        .where(
            (Server.id == server.id)
            & Server.owner_notified_down_at.is_null(False)
            & Server.health.in_(_UP)
        )
        .execute()
    )
    if not claimed:
        return "skipped: not told down, or down again"
    delivery = _send(ctx, server, OWNER_BACK_TEXT)
    _record(ctx, server, "the owner: their assistant is back", delivery)
    return delivery.detail


def _send(ctx: JobContext, server: Server, text: str) -> Delivery:
    try:
        customer = rows.get_by_id(Customer, server.customer_id)
        notifier = build_notifier(ctx.settings, ctx.keyring)
        return notifier.send(customer, owner_chat(customer), text)
    except Exception as exc:  # a notification never fails the job that asked for it
        server_logger(log, server.id, "health").warning("owner not told: %s", type(exc).__name__)
        return Delivery(False, f"notification failed ({type(exc).__name__})")


def _outcome(ctx: JobContext, delivery: Delivery) -> str:
    if delivery.sent:
        return "sent"
    return "off" if not ctx.settings.notifications_enabled else "failed"


def _record(ctx: JobContext, server: Server, told: str, delivery: Delivery) -> None:
    outcome = _outcome(ctx, delivery)
    count_notification(ctx.redis, "owner", outcome)
    verb = "told" if delivery.sent else "could not tell"
    record_event(server.id, EVENT_KIND, f"{verb} {told}: {delivery.detail}", clock=ctx.clock)
    server_logger(log, server.id, "health").log(
        logging.INFO if delivery.sent else logging.WARNING,
        "%s %s: %s",
        verb,
        told,
        delivery.detail,
    )


def alert_operators(server_id: int | None, what: str, why: str, next_step: str) -> str:
    """RQ job: POST one alert to the operators' webhook (RACHEL_OPERATOR_WEBHOOK_URL)."""
    ctx = context()
    with connection():
        name = None
        if server_id is not None:
            server = rows.get(Server, server_id)
            name = server.name if server is not None else None
        alert = OperatorAlert(what, why, next_step, ctx.clock.now(), server_id, name)
        try:
            delivery = OperatorAlerts(ctx.settings.operator_webhook_url).send(alert)
        except Exception as exc:  # never fails: the alert is on the timeline either way
            delivery = Delivery(False, f"alert failed ({type(exc).__name__})")
        if delivery.sent:
            outcome = "sent"
        else:
            outcome = "off" if not ctx.settings.operator_webhook_url else "failed"
        count_notification(ctx.redis, "operators", outcome)
        message = f"operators alerted: {what}: {why}; next: {next_step} ({delivery.detail})"
        if server_id is None:
            Event.create(
                server=None, at=ctx.clock.now(), kind=EVENT_KIND, message=message, actor="system"
            )
        else:
            record_event(server_id, EVENT_KIND, message, clock=ctx.clock)
        return delivery.detail
