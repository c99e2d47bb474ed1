"""The grace enforcer's pure decision, subscription by subscription."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.domain.grace import Action, GraceState, decide

NOW = datetime(2026, 3, 1, 12, 0, 0)


DAY = 86400.0


def grace(state: GraceState, now: datetime = NOW) -> Action:
    return decide(state, now, grace_seconds=3 * DAY, warning_seconds=DAY).action


def lapsed(hours_ago: float, **fields: object) -> GraceState:
    at = NOW - timedelta(hours=hours_ago)
    values: dict[str, object] = {
        "status": "past_due",
        "lapsed_at": at,
        "grace_until": at + timedelta(days=3),
        "warned_at": None,
        "server_status": "ready",
        "pending": False,
    }
    values.update(fields)
    return GraceState(**values)  # type: ignore[arg-type]


def test_grace_timeline_schedule_warn_deprovision() -> None:
    assert grace(lapsed(1)) == Action.SCHEDULE
    assert grace(lapsed(1, pending=True)) == Action.NOTHING
    assert grace(lapsed(47, pending=True)) == Action.NOTHING  # 25 h left: not yet
    assert grace(lapsed(49, pending=True)) == Action.WARN  # 23 h left
    assert grace(lapsed(49, pending=True, warned_at=NOW)) == Action.NOTHING
    assert grace(lapsed(72, pending=True, warned_at=NOW)) == Action.DEPROVISION
    # Never warned (the enforcer was down): the deadline still wins.
    assert grace(lapsed(80)) == Action.DEPROVISION


def test_grace_cancel_and_no_server() -> None:
    active = GraceState("active", None, None, None, "ready", pending=True)
    assert grace(active) == Action.CANCEL
    assert grace(GraceState("active", None, None, None, "ready")) == Action.NOTHING
    for status in (None, "deprovisioning", "deleted"):
        assert grace(lapsed(100, server_status=status)) == Action.NOTHING
    # An in-flight or failed server is enforced too.
    assert grace(lapsed(100, server_status="creating")) == Action.DEPROVISION
    # grace_until missing: lapsed_at + the grace period.
    assert grace(lapsed(73, grace_until=None)) == Action.DEPROVISION
