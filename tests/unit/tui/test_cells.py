"""The fleet table's cells: durations, phase progress, totals against the SLA, rendering."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.domain.fleet import LastEvent
from tests.unit.tui.rows import NOW, row
from tui.cells import SORT_KEYS, Cell, duration, phase_cell, render, total_cell


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0, "0s"), (59.9, "59s"), (61, "1m01s"), (3700, "1h01m"), (90000, "1d01h")],
)
def test_duration(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text


def test_phase_progress() -> None:
    assert phase_cell("pending").text == "□□□□ 0/4"
    assert phase_cell("cloud_init").text == "■■□□ 2/4"
    assert phase_cell("ready").text == "■■■■ 4/4"
    assert phase_cell("failed").style == "red"


def test_total_against_sla() -> None:
    assert total_cell(row(1).server, NOW, 120) == Cell("1m40s/120s", "yellow")
    fast = row(1, provisioning_seconds=40.0).server
    assert total_cell(fast, NOW, 120).style == "green"
    slow = row(2, "creating", created_at=NOW - timedelta(seconds=200)).server
    assert total_cell(slow, NOW, 120) == Cell("3m20s/120s", "bold red")
    assert total_cell(row(3, "failed").server, NOW, 120).text == "-"


def test_render_shows_last_event_and_mark() -> None:
    event = LastEvent(NOW, "transition", "cloud_init -> injecting_secrets")
    cells = render(row(4, event=event), NOW, 120, marked=True)
    assert cells["last_event"].text == "transition: cloud_init -> injecting_secrets"
    assert cells["mark"].text == "●"
    assert cells["status"].style == "bold green"


def test_health_is_shown_for_ready_servers_and_sorts_worst_first() -> None:
    rows = [
        row(1, health="healthy"),
        row(2, health="unhealthy", health_reason="Rachel8 failed (exit-code)"),
        row(3, health="degraded"),
        row(4, "creating"),
        row(5, health="unknown"),
    ]
    cells = [render(r, NOW, 120)["health"] for r in rows]
    assert cells == [
        Cell("healthy", "green"),
        Cell("unhealthy", "bold red"),
        Cell("degraded", "yellow"),
        Cell("-", "dim"),
        Cell("unknown", "grey70"),
    ]
    ordered = sorted(rows, key=SORT_KEYS["health"])
    assert [r.server.id for r in ordered] == [2, 3, 5, 1, 4]


def test_an_unhealthy_servers_reason_stays_in_sight() -> None:
    event = LastEvent(NOW, "repair", "restart: Rachel8 failed again")
    down = row(6, health="unhealthy", health_reason="another process polls this bot", event=event)
    cell = render(down, NOW, 120)["last_event"]
    assert cell == Cell("unhealthy: another process polls this bot", "red")
    fine = row(7, health="degraded", health_reason="disk 95% full", event=event)
    assert render(fine, NOW, 120)["last_event"].text == "repair: restart: Rachel8 failed again"
