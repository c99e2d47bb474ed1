"""The server screen's phase spans, from its transitions; the summary's pool figures."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.domain.costs import IdleCost
from core.domain.pool_metrics import PoolSnapshot
from tui.backend import EventLine
from tui.summary import (
    health_line,
    health_timeline_text,
    phase_spans,
    pool_text,
    timeline_text,
)

NOW = datetime(2026, 1, 1, 12, 0, 0)


def test_phase_spans_from_transitions() -> None:
    def ev(seconds_ago: float, to: str) -> EventLine:
        return EventLine(NOW - timedelta(seconds=seconds_ago), "transition", "system", "", to)

    events = [ev(100, "creating"), EventLine(NOW, "retry", "system", "x", None), ev(60, "ready")]
    spans = phase_spans(sorted(events, key=lambda e: e.at), NOW)
    assert [(s.status, s.seconds, s.current) for s in spans] == [
        ("creating", 40.0, False),
        ("ready", 60.0, True),
    ]
    text = timeline_text(spans, NOW - timedelta(seconds=110)).plain
    assert text == "pending 10s  >  creating 40s  >  ready 1m00s…"


def test_health_spans_and_line() -> None:
    def ev(seconds_ago: float, to: str, kind: str = "health") -> EventLine:
        return EventLine(NOW - timedelta(seconds=seconds_ago), kind, "cron", to, to)

    events = [ev(3700, "ready", "transition"), ev(3600, "healthy"), ev(120, "unhealthy")]
    spans = phase_spans(events, NOW, kind="health")
    assert health_timeline_text(spans).plain == "healthy 58m00s  >  unhealthy 2m00s…"
    assert health_timeline_text([]).plain == "no health change yet"
    many = [ev(1000 - i, "healthy" if i % 2 else "degraded") for i in range(10)]
    text = health_timeline_text(phase_spans(many, NOW, kind="health")).plain
    assert text.startswith("(2 earlier)  ")
    line = health_line({"healthy": 7, "unhealthy": 2}).plain
    assert line == "health  healthy 7  degraded 0  unhealthy 2  unknown 0  \n"


def test_the_pool_and_its_idle_cost_in_the_summary() -> None:
    priced = PoolSnapshot({"warm": 2, "booting": 1}, IdleCost(3, 0, 21.9), 9.5, 0.11)
    assert pool_text(priced).plain == (
        "  | pool warm 2 +1  idle €0.03/h €21.90/mo  images 9.5 GB €0.11/mo"
    )
    unpriced = PoolSnapshot({"warm": 1}, IdleCost(1, 1, 0.0), 0.0, 0.0)
    assert pool_text(unpriced).plain == "  | pool warm 1  idle €0.00/h €0.00/mo (+1 unpriced)"
    assert pool_text(PoolSnapshot({}, IdleCost(0, 0, 0.0), 0.0, 0.0)).plain == "  | pool warm 0"
