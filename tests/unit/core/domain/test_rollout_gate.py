"""The health gate of an update or a rollback (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.domain.health import HealthPolicy
from core.domain.heartbeats import ServiceReport, StoredHeartbeat, TelegramReport
from core.domain.rollout_gate import Gate, GateOutcome, judge, judge_rollback, judge_soak
from tests.unit.core.domain.test_heartbeats import beat

SWITCHED = datetime(2026, 3, 1, 12, 0, 0)
NEW = "1" * 40
OLD = "63f162e9302a66344772ab23653789f701c7bcf9"
POLICY = HealthPolicy(missing_seconds=75)
GATE = 60.0


def stored(arrived: float, **changes: Any) -> StoredHeartbeat:
    """A heartbeat of `NEW` that arrived `arrived` seconds after the switch."""
    changes.setdefault("commit", NEW)
    at = (SWITCHED + timedelta(seconds=arrived)).replace(tzinfo=UTC).timestamp()
    return StoredHeartbeat(beat(**changes), at)


def gate(
    latest: StoredHeartbeat | None, after: float, *, restarts: int = 0, seconds: float = GATE
) -> Gate:
    """The gate `after` seconds after the switch."""
    return judge(
        latest,
        commit=NEW,
        switched_at=SWITCHED,
        gate_seconds=seconds,
        now=SWITCHED + timedelta(seconds=after),
        policy=POLICY,
        restarts_at_switch=restarts,
    )


def running(restarts: int = 0) -> ServiceReport:
    return ServiceReport("active", "running", restarts, "success", 0)


def test_healthy_heartbeats_pass_once_the_gate_time_is_over() -> None:
    assert gate(stored(2), 2).outcome == GateOutcome.WAITING
    assert gate(stored(2), 2).reason == f"healthy on {NEW[:12]} so far"
    assert gate(stored(50), 59.9).waiting
    passed = gate(stored(55), 60)
    assert passed == Gate(GateOutcome.PASSED, f"healthy on {NEW[:12]} for 60s")
    assert passed.passed and not passed.failed and not passed.waiting


def test_no_heartbeat_waits_then_fails_after_gate_plus_missing() -> None:
    assert gate(None, 0).waiting
    assert gate(None, 134.9).waiting
    failed = gate(None, 135)
    assert failed == Gate(
        GateOutcome.FAILED, f"no heartbeat showing Rachel8 {NEW[:12]} within 135s of the switch"
    )


def test_a_heartbeat_from_before_the_switch_is_no_evidence() -> None:
    # Healthy, on the new commit even, but it arrived before the switch.
    assert gate(stored(-1), 100).waiting
    assert gate(stored(0), 100).waiting, "arrived at the very switch: not after it"
    assert gate(stored(-1), 135).failed


def test_a_heartbeat_of_another_commit_is_no_evidence_and_the_failure_names_it() -> None:
    old = stored(10, commit=OLD)
    assert gate(old, 20).waiting, "sent before the link moved, still in flight"
    assert gate(old, 135).reason == (
        f"no heartbeat showing Rachel8 {NEW[:12]} within 135s of the switch "
        f"(the latest shows {OLD[:12]})"
    )
    assert gate(stored(10, commit=None), 135).reason.endswith("of the switch")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (
            {"service": ServiceReport("failed", "failed", 5, "exit-code", 1)},
            "unhealthy: Rachel8 is not running: failed/failed (exit-code, exit status 1)",
        ),
        (
            # Seen between two of systemd's restarts after one since the switch: crash-looping.
            {"service": ServiceReport("activating", "auto-restart", 1, "exit-code", 1)},
            "unhealthy: Rachel8 is not running: activating/auto-restart (exit-code, exit status 1)",
        ),
        (
            {"telegram": TelegramReport("ok", True, 0)},
            "unhealthy: a webhook is set on the bot, Rachel8 gets no updates",
        ),
        (
            {"telegram": TelegramReport("ok", False, 2)},
            "unhealthy: another process polls this bot (409 Conflict)",
        ),
        (
            {"telegram": TelegramReport("unauthorized", False, 0)},
            "unhealthy: bot token revoked: Telegram answers getMe with Unauthorized",
        ),
        (
            {"telegram": TelegramReport("error", False, 0)},
            "degraded: the VPS cannot reach Telegram (getMe failed)",
        ),
        (
            {"service": None},
            "unhealthy: Rachel8's unit state is unknown: the agent could not read it",
        ),
    ],
)
def test_the_first_heartbeat_that_is_not_healthy_fails_the_gate_at_once(
    changes: dict[str, Any], reason: str
) -> None:
    result = gate(stored(1, **changes), 1)
    assert result == Gate(GateOutcome.FAILED, reason)


def test_restarts_grown_since_the_switch_fail_it_even_when_running_again() -> None:
    # Rachel8 crashed between two heartbeats; systemd restarted it: running again.
    crashed = stored(30, service=running(restarts=1))
    assert gate(crashed, 30).reason == (
        "degraded: systemd restarted Rachel8 since the last heartbeat"
    )
    # The switch did not restart the unit (already current and active): its count is the base.
    assert gate(stored(30, service=running(restarts=3)), 30, restarts=3).waiting
    assert gate(stored(30, service=running(restarts=4)), 30, restarts=3).failed


def test_evidence_gone_silent_fails_the_gate() -> None:
    assert gate(stored(10), 84.9).passed
    silent = gate(stored(10), 85)
    assert silent == Gate(
        GateOutcome.FAILED, "silent during the gate: no heartbeat for more than 75s"
    )


def test_the_health_rules_commit_is_the_one_switched_to() -> None:
    # The heartbeat shows NEW: judged against NEW, never against the row's old commit.
    assert gate(stored(61), 61).passed


def test_a_rollback_passes_at_its_first_healthy_heartbeat() -> None:
    def rollback(latest: StoredHeartbeat | None, after: float) -> Gate:
        return judge(
            latest,
            commit=OLD,
            switched_at=SWITCHED,
            gate_seconds=0,
            now=SWITCHED + timedelta(seconds=after),
            policy=POLICY,
        )

    assert rollback(stored(1), 1).waiting, "still the bad release's heartbeat"
    assert rollback(stored(2, commit=OLD), 2) == Gate(
        GateOutcome.PASSED, f"healthy on {OLD[:12]} for 0s"
    )
    assert rollback(None, 75).failed
    bad = stored(2, commit=OLD, service=ServiceReport("failed", "failed", 0, "exit-code", 1))
    assert rollback(bad, 2).failed


def test_a_rollback_waits_for_its_switch_back_however_long_the_job_takes() -> None:
    def rollback(row: str | None, stamped: float | None, after: float) -> Gate:
        return judge_rollback(
            stored(after - 1, commit=OLD),
            from_commit=OLD,
            row_commit=row,
            rollback_at=None if stamped is None else SWITCHED + timedelta(seconds=stamped),
            now=SWITCHED + timedelta(seconds=after),
            policy=POLICY,
        )

    waiting = Gate(GateOutcome.WAITING, f"waiting for the switch back to {OLD[:12]}")
    assert rollback(NEW, 0, 1000) == waiting, "the row still says the new commit: not switched"
    assert rollback(OLD, None, 1000) == waiting
    assert rollback(OLD, 5, 10).passed
    assert rollback(OLD, 20, 10).waiting, "its heartbeat came before the switch back"


# --- after the gate: the soak (and every later wave) judges it again ------------------


def soak(latest: StoredHeartbeat | None, after: float) -> Gate:
    """A server switched at `SWITCHED` whose gate passed, judged `after` seconds on."""
    return judge_soak(
        latest,
        commit=NEW,
        switched_at=SWITCHED,
        now=SWITCHED + timedelta(seconds=after),
        policy=POLICY,
    )


def test_the_soak_passes_while_the_server_stays_healthy() -> None:
    assert soak(stored(115), 120) == Gate(GateOutcome.PASSED, f"still healthy on {NEW[:12]}")
    assert soak(stored(3590), 3600).passed, "however long the rollout goes on"


def test_a_crash_after_the_gate_fails_the_soak_by_the_gates_rule() -> None:
    # crash_later: healthy through its 60 s gate, then it exits and systemd restarts it
    # (seen in auto-restart after a restart since the switch: crash-looping).
    restarting = stored(90, service=ServiceReport("activating", "auto-restart", 1, "exit-code", 1))
    assert soak(restarting, 91) == Gate(
        GateOutcome.FAILED,
        "after its gate: unhealthy: Rachel8 is not running: activating/auto-restart (exit-code, "
        "exit status 1)",
    )
    # Caught between two heartbeats: running again, but the counter grew since the switch.
    assert soak(stored(120, service=running(restarts=1)), 121).reason == (
        "after its gate: degraded: systemd restarted Rachel8 since the last heartbeat"
    )
    webhook = stored(120, telegram=TelegramReport("ok", True, 0))
    assert soak(webhook, 121).reason.startswith("after its gate: unhealthy: a webhook is set")


def test_a_server_silent_during_the_soak_fails_it() -> None:
    assert soak(stored(100), 174.9).passed
    assert soak(stored(100), 175) == Gate(
        GateOutcome.FAILED, "silent after its gate: no heartbeat for more than 75s"
    )
    assert soak(None, 100) == Gate(
        GateOutcome.FAILED, "after its gate: no heartbeat since its switch"
    )
    assert soak(stored(-5), 100).failed, "its only heartbeat came before the switch"


def test_a_server_that_no_longer_runs_the_release_fails_the_soak() -> None:
    assert soak(stored(100, commit=OLD), 101).reason.startswith("after its gate: degraded: ")
