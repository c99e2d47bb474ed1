"""Uptime over 30 days from health changes: what counts as up, down, and not at all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.domain.health import HealthState
from core.domain.uptime import WINDOW, Uptime, uptime

END = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
START = END - WINDOW
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def test_nothing_heard_is_not_measured() -> None:
    assert uptime([], end=END) == Uptime(0.0, 0.0)
    assert uptime([], end=END).percent is None
    assert uptime([(END - HOUR, "unknown")], end=END).percent is None


def test_healthy_all_along_is_100_percent() -> None:
    result = uptime([(START - DAY, "healthy")], end=END)
    assert result.up_seconds == WINDOW.total_seconds()
    assert result.percent == 100.0


def test_degraded_counts_as_up_and_unhealthy_as_down() -> None:
    changes = [
        (START - DAY, "healthy"),
        (END - 10 * DAY, "degraded"),
        (END - 6 * DAY, "unhealthy"),
        (END - 3 * DAY, "healthy"),
    ]
    result = uptime(changes, end=END)
    assert result.down_seconds == (3 * DAY).total_seconds()
    assert result.up_seconds == (WINDOW - 3 * DAY).total_seconds()
    assert result.percent == pytest.approx(90.0)


def test_unknown_time_is_left_out_of_both_sides() -> None:
    changes = [
        (END - 4 * DAY, "healthy"),
        (END - 3 * DAY, "unknown"),
        (END - 2 * DAY, "unhealthy"),
        (END - DAY, "healthy"),
    ]
    result = uptime(changes, end=END)
    assert result.up_seconds == (2 * DAY).total_seconds()
    assert result.down_seconds == DAY.total_seconds()
    assert result.counted_seconds == (3 * DAY).total_seconds()
    assert result.percent == pytest.approx(200 / 3)


def test_time_before_the_first_change_is_not_counted() -> None:
    # A server ready 2 days ago: its first health change starts the measure.
    result = uptime([(END - 2 * DAY, "healthy"), (END - DAY, "unhealthy")], end=END)
    assert result.counted_seconds == (2 * DAY).total_seconds()
    assert result.percent == 50.0


def test_changes_before_the_window_count_only_from_its_start() -> None:
    changes = [
        (START - 5 * DAY, "healthy"),
        (START - 2 * DAY, "unhealthy"),  # still down when the window opens
        (START + DAY, "healthy"),
    ]
    result = uptime(changes, end=END)
    assert result.down_seconds == DAY.total_seconds()
    assert result.up_seconds == (WINDOW - DAY).total_seconds()


def test_changes_after_the_end_are_ignored_and_the_order_given_does_not_matter() -> None:
    changes = [
        (END + HOUR, "unhealthy"),
        (END - 2 * HOUR, "unhealthy"),
        (END - 4 * HOUR, "healthy"),
    ]
    result = uptime(changes, end=END)
    assert (result.up_seconds, result.down_seconds) == (7200.0, 7200.0)


def test_changes_at_one_instant_keep_their_order() -> None:
    at = END - HOUR
    assert uptime([(at, "unhealthy"), (at, "healthy")], end=END).percent == 100.0
    assert uptime([(at, "healthy"), (at, "unhealthy")], end=END).percent == 0.0


def test_an_unrecognised_state_counts_as_unknown() -> None:
    result = uptime([(END - 2 * HOUR, "healthy"), (END - HOUR, "on-fire")], end=END)
    assert result.counted_seconds == 3600.0


def test_a_shorter_window() -> None:
    changes = [(END - 2 * DAY, "unhealthy"), (END - HOUR, "healthy")]
    result = uptime(changes, end=END, window=DAY)
    assert (result.up_seconds, result.down_seconds) == (3600.0, 23 * 3600.0)


def test_every_health_state_has_a_rule() -> None:
    rules = {state: uptime([(END - HOUR, state.value)], end=END).percent for state in HealthState}
    assert rules == {
        HealthState.HEALTHY: 100.0,
        HealthState.DEGRADED: 100.0,
        HealthState.UNHEALTHY: 0.0,
        HealthState.UNKNOWN: None,
    }
