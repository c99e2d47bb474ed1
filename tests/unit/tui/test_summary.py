"""The server screen's phase spans, from its transitions."""

from __future__ import annotations

from datetime import datetime, timedelta

from tui.backend import EventLine
from tui.summary import phase_spans, timeline_text

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
