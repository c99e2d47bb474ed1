"""Subscription status changes, as the billing side reports them, for the grace enforcer.

Rules:
- statuses are `active`, `past_due`, `canceled` and `unpaid`;
- leaving `active` sets `lapsed_at` (the event's time) and `grace_until`
  (`lapsed_at` + `RACHEL_GRACE_PERIOD`); moving between lapsed statuses keeps
  them (the grace period does not restart); returning to `active` clears
  both, and `warned_at`, so a later lapse is warned about again;
- every event carries `occurred_at`, when it happened on the billing side.
  `Subscription.event_at` holds the `occurred_at` of the event that set the
  current state, and an event older than that is ignored (webhooks arrive out
  of order). The update is a compare-and-set, so two racing events cannot
  both apply on top of the same state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import peewee

from core.domain.customers import ensure
from core.errors import RachelError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.platform.settings import Settings
from core.store.db import current
from core.store.models import Subscription

log = logging.getLogger(__name__)

ACTIVE = "active"
STATUSES = ("active", "past_due", "canceled", "unpaid")
#: How far in the future an event's time may be (clock skew), as for signatures.
MAX_FUTURE_SKEW = timedelta(minutes=5)
_ATTEMPTS = 5
#: Events (and period ends) before this are nonsense, and near datetime's limits.
EARLIEST = datetime(2000, 1, 1)


class SubscriptionRejected(RachelError):
    """A well-formed subscription event that cannot be recorded; nothing was changed."""

    code = "invalid_subscription_event"


@dataclass(frozen=True)
class SubscriptionChange:
    """The subscription after an event, and whether the event changed it."""

    subscription: Subscription
    applied: bool


def naive_utc(when: datetime) -> datetime:
    """`when` as the naive UTC datetime the database stores.

    Raises:
        SubscriptionRejected: the time is out of range once converted (year 1 or 9999).
    """
    if when.tzinfo is not None:
        try:
            when = when.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:
            raise SubscriptionRejected("a time is out of range", code="invalid_time") from None
    if when < EARLIEST:
        raise SubscriptionRejected(f"times must be after {EARLIEST:%Y-%m-%d}", code="invalid_time")
    return when


def _new_state(
    previous_status: str | None,
    previous_lapsed: datetime | None,
    status: str,
    occurred_at: datetime,
    grace_seconds: float,
) -> dict[str, datetime | None]:
    if status == ACTIVE:
        return {"lapsed_at": None, "grace_until": None, "warned_at": None}
    lapsed = previous_lapsed if previous_status not in (None, ACTIVE) and previous_lapsed else None
    lapsed = lapsed or occurred_at
    return {"lapsed_at": lapsed, "grace_until": lapsed + timedelta(seconds=grace_seconds)}


def record_change(
    external_id: str,
    status: str,
    occurred_at: datetime,
    settings: Settings,
    *,
    current_period_end: datetime | None = None,
    email: str | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> SubscriptionChange:
    """Apply one subscription event for the customer with dashboard id `external_id`.

    The customer is created when unknown (billing may speak before the first deploy).

    Raises:
        SubscriptionRejected: unknown status, or an event time in the future.
    """
    if status not in STATUSES:
        raise SubscriptionRejected(
            f"status must be one of {', '.join(STATUSES)}", code="invalid_status"
        )
    occurred_at = naive_utc(occurred_at)
    period_end = naive_utc(current_period_end) if current_period_end else None
    if occurred_at > clock.now() + MAX_FUTURE_SKEW:
        raise SubscriptionRejected("occurred_at is in the future", code="future_event")
    db = current()
    for _ in range(_ATTEMPTS):
        try:
            with db.atomic():
                change = _apply(
                    external_id,
                    status=status,
                    occurred_at=occurred_at,
                    period_end=period_end,
                    email=email,
                    settings=settings,
                    clock=clock,
                )
        except peewee.IntegrityError:
            continue  # a concurrent first event created the row: apply on top of it
        if change is not None:
            return change
    raise RachelError(
        f"subscription of {external_id} changed concurrently; retry",
        code="conflict",
        transient=True,
    )


def _apply(
    external_id: str,
    *,
    status: str,
    occurred_at: datetime,
    period_end: datetime | None,
    email: str | None,
    settings: Settings,
    clock: Clock,
) -> SubscriptionChange | None:
    customer = ensure(external_id, email, clock=clock)
    sub: Subscription | None = Subscription.get_or_none(Subscription.customer == customer)
    grace = settings.grace_period_seconds
    if sub is None:
        values = _new_state(None, None, status, occurred_at, grace)
        created: Subscription = Subscription.create(
            customer=customer,
            status=status,
            current_period_end=period_end,
            event_at=occurred_at,
            updated_at=clock.now(),
            **values,
        )
        log.info(
            "customer %s: subscription %s", external_id, status, extra={"customer_id": external_id}
        )
        return SubscriptionChange(created, applied=True)
    last = sub.event_at or sub.updated_at
    if occurred_at < last:
        log.info(
            "customer %s: subscription event of %s is older than the state of %s; ignored",
            external_id,
            occurred_at,
            last,
            extra={"customer_id": external_id},
        )
        return SubscriptionChange(sub, applied=False)
    values = _new_state(sub.status, sub.lapsed_at, status, occurred_at, grace)
    changes: dict[str, object] = {
        "status": status,
        "event_at": occurred_at,
        "updated_at": clock.now(),
        **values,
    }
    if period_end is not None:
        changes["current_period_end"] = period_end
    updated = (
        Subscription.update({getattr(Subscription, k): v for k, v in changes.items()})
        .where(
            (Subscription.id == sub.id)
            & (Subscription.status == sub.status)
            & (Subscription.updated_at == sub.updated_at)
            & (
                Subscription.event_at.is_null()
                if sub.event_at is None
                else Subscription.event_at == sub.event_at
            )
        )
        .execute()
    )
    if not updated:
        return None  # another event got there first: re-read and decide again
    if sub.status != status:
        log.info(
            "customer %s: subscription %s -> %s",
            external_id,
            sub.status,
            status,
            extra={"customer_id": external_id},
        )
    fresh: Subscription = Subscription.get_by_id(sub.id)
    return SubscriptionChange(fresh, applied=True)
