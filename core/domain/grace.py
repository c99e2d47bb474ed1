"""The grace period of lapsed subscriptions, as a pure decision per subscription.

A subscription that leaves `active` lapses (`lapsed_at`); its server is kept
until `grace_until` (`lapsed_at` + RACHEL_GRACE_PERIOD, recorded by
`core.domain.subscriptions`). The enforcer (`jobs.grace`) asks `decide` about every
customer with a live server, and does what it says:

- SCHEDULE: the subscription lapsed and nothing is pending yet: record on the
  server's timeline when it will be deprovisioned;
- WARN: the deadline is within RACHEL_GRACE_WARNING and the customer has not
  been warned for this lapse (`warned_at` is empty): notify the customer;
- DEPROVISION: the grace period is over: deprovision the live server;
- CANCEL: the subscription is active again while a deprovision was pending:
  record that it is cancelled;
- NOTHING: otherwise.

Whether a deprovision is pending is read from the server's timeline (the last
grace Event), so the decision survives restarts and Redis being flushed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

ACTIVE = "active"

#: Event kinds the enforcer writes on the server's timeline.
EVENT_SCHEDULED = "grace-scheduled"
EVENT_WARNED = "grace-warning"
EVENT_CANCELLED = "grace-cancelled"
EVENT_DEPROVISION = "grace-deprovision"
#: The kinds that leave a deprovision pending (the last grace Event is one of them).
PENDING_KINDS = frozenset({EVENT_SCHEDULED, EVENT_WARNED})
GRACE_KINDS = (EVENT_SCHEDULED, EVENT_WARNED, EVENT_CANCELLED, EVENT_DEPROVISION)

#: Server statuses the enforcer leaves alone: on their way out, or gone.
NOT_ENFORCED = frozenset({"deprovisioning", "deleted"})


class Action(StrEnum):
    """What the enforcer does about one subscription."""

    NOTHING = "nothing"
    SCHEDULE = "schedule"
    WARN = "warn"
    DEPROVISION = "deprovision"
    CANCEL = "cancel"


@dataclass(frozen=True)
class GraceState:
    """What the decision needs to know of one customer.

    Attributes:
        status: the subscription's status (active, past_due, canceled, unpaid).
        lapsed_at: when it left active (None while active).
        grace_until: when its grace period ends (None while active).
        warned_at: when the customer was warned about this lapse.
        server_status: the customer's live server's status, None without one.
        pending: the server's last grace Event left a deprovision pending.
    """

    status: str
    lapsed_at: datetime | None
    grace_until: datetime | None
    warned_at: datetime | None
    server_status: str | None
    pending: bool = False


@dataclass(frozen=True)
class Decision:
    """The action and why, in words fit for the server's timeline."""

    action: Action
    reason: str
    deadline: datetime | None = None


def deadline(state: GraceState, grace_seconds: float) -> datetime | None:
    """When the grace period ends: `grace_until`, else `lapsed_at` + the grace period."""
    if state.grace_until is not None:
        return state.grace_until
    if state.lapsed_at is not None:
        return state.lapsed_at + timedelta(seconds=grace_seconds)
    return None


def decide(  # noqa: PLR0911 - a decision table reads best as early returns
    state: GraceState, now: datetime, *, grace_seconds: float, warning_seconds: float
) -> Decision:
    """The enforcer's action for one customer at `now` (pure).

    Args:
        state: the subscription and server as read from the database.
        now: the current time (naive UTC).
        grace_seconds: RACHEL_GRACE_PERIOD, used when `grace_until` is missing.
        warning_seconds: RACHEL_GRACE_WARNING, how long before the deadline to warn.
    """
    if state.server_status is None or state.server_status in NOT_ENFORCED:
        return Decision(Action.NOTHING, "no live server to enforce on")
    ends = deadline(state, grace_seconds)
    if state.status == ACTIVE or ends is None:
        if state.pending:
            return Decision(
                Action.CANCEL,
                "subscription active again: the pending deprovision is cancelled",
            )
        return Decision(Action.NOTHING, "subscription in good standing")
    lapsed = f"subscription {state.status}"
    if state.lapsed_at is not None:
        lapsed += f" since {state.lapsed_at:%Y-%m-%d %H:%M} UTC"
    if now >= ends:
        return Decision(
            Action.DEPROVISION,
            f"{lapsed}; the grace period ended {ends:%Y-%m-%d %H:%M} UTC: deprovisioning",
            ends,
        )
    if state.warned_at is None and now >= ends - timedelta(seconds=warning_seconds):
        return Decision(
            Action.WARN,
            f"{lapsed}; the server will be deprovisioned at {ends:%Y-%m-%d %H:%M} UTC "
            "unless the subscription is renewed: customer warned",
            ends,
        )
    if not state.pending:
        return Decision(
            Action.SCHEDULE,
            f"{lapsed}; deprovision scheduled for {ends:%Y-%m-%d %H:%M} UTC "
            "(cancelled if the subscription is renewed before)",
            ends,
        )
    return Decision(
        Action.NOTHING, f"{lapsed}; deprovision pending for {ends:%Y-%m-%d %H:%M}", ends
    )


def warning_text(ends: datetime) -> str:
    """The message the customer receives (no secret, no internal detail)."""
    return (
        "Your Rachel subscription has lapsed. Your assistant's server will be "
        f"deleted on {ends:%Y-%m-%d at %H:%M} UTC unless the subscription is renewed "
        "before then."
    )
