"""Unit files as systemd reads them: time spans, sections, timers, [Install]."""

from __future__ import annotations

import pytest

from sim.units import parse_span, parse_unit, span_text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30", 30.0),
        ("30s", 30.0),
        ("30 s", 30.0),
        ("1min", 60.0),
        ("2min 5s", 125.0),
        ("2min5s", 125.0),
        ("1h 30min", 5400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("1d", 86400.0),
        ("2 weeks", 1209600.0),
        ("1M", 2629800.0),
        ("1m", 60.0),
        ("30 seconds", 30.0),
    ],
)
def test_time_spans_systemd_accepts(text: str, seconds: float) -> None:
    assert parse_span(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "thirty", "30x", "-5s", "30s later", "s", "1,5h"])
def test_time_spans_systemd_refuses(text: str) -> None:
    assert parse_span(text) is None


def test_spans_print_as_systemd_prints_them() -> None:
    assert [span_text(s) for s in (0, 0.1, 1, 30, 60, 90, 3600, 3725)] == [
        "0", "100ms", "1s", "30s", "1min", "1min 30s", "1h", "1h 2min 5s",
    ]  # fmt: skip


def test_a_timer_reads_its_own_section_only() -> None:
    unit = parse_unit(
        "/etc/systemd/system/agent.timer",
        "[Unit]\nDescription=the agent\n[Service]\nExecStart=/bin/true\n"
        "[Timer]\nOnBootSec=10s\nOnUnitActiveSec=thirty\nOnUnitActiveSec=30s\nAccuracySec=1s\n"
        "ExecStart=/bin/false\n[Install]\nWantedBy=timers.target\n",
    )
    assert unit.timer is not None
    assert unit.timer.values == [("boot", 10.0), ("unit_active", 30.0)]
    assert (unit.timer.accuracy, unit.triggers, unit.wanted_by) == (
        1.0,
        "agent.service",
        ["timers.target"],
    )
    assert unit.exec_start == []  # [Service] is not a timer's section
    assert unit.warnings == ["Failed to parse timer value, ignoring: thirty"]


def test_a_timer_may_name_its_unit_and_a_service_ignores_timer_keys() -> None:
    timer = parse_unit("/etc/systemd/system/a.timer", "[Timer]\nOnActiveSec=1\nUnit=b.service\n")
    assert timer.triggers == "b.service" and timer.timer is not None
    assert timer.timer.accuracy == 60.0  # systemd's default AccuracySec
    service = parse_unit(
        "/etc/systemd/system/a.service",
        "[Service]\nType=oneshot\nExecStart=/usr/local/sbin/a\n[Timer]\nOnActiveSec=1\n",
    )
    assert (service.type, service.timer, service.wanted_by) == ("oneshot", None, [])
    misplaced = parse_unit("/etc/systemd/system/c.service", "[Unit]\nExecStart=/bin/true\n")
    assert misplaced.exec_start == []  # ExecStart= belongs to [Service]
