"""The TUI's pure logic: cells, filters, the table diff, the model, summary text."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from core.domain.fleet import FleetRow, LastEvent, percentile, summarize
from tui.backend import EventLine
from tui.cells import Cell, Row, duration, phase_cell, render, total_cell
from tui.filters import matches, parse, wants_deleted, with_status_term
from tui.live import server_ids
from tui.model import FleetModel, TableDiff, diff_tables
from tui.screens.confirm import confirmation_word, describe
from tui.summary import phase_spans, timeline_text

NOW = datetime(2026, 1, 1, 12, 0, 0)


def row(sid: int, status: str = "ready", **fields: object) -> Row:
    values: dict[str, object] = {
        "id": sid,
        "name": f"rachel-{sid}",
        "customer": f"cus_{sid:03d}",
        "status": status,
        "attempt": 0,
        "ipv4": f"10.0.0.{sid}",
        "location": "fsn1",
        "server_type": "cx23",
        "provider_id": 1000 + sid,
        "created_at": NOW - timedelta(seconds=100),
        "status_changed_at": NOW - timedelta(seconds=10),
        "seconds_in_status": 10.0,
        "seconds_total": 100.0,
        "provisioning_seconds": 100.0 if status == "ready" else None,
        "last_error": None,
        "job_id": None,
    }
    event = fields.pop("event", None)
    values.update(fields)
    return Row(FleetRow(**values), event)  # type: ignore[arg-type]


# -- cells ------------------------------------------------------------------------


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


# -- filters ----------------------------------------------------------------------


def test_filter_terms() -> None:
    rows = [row(1), row(2, "failed"), row(3, "creating", location="nbg1"), row(4, "deleted")]

    def hits(query: str) -> list[int]:
        terms = parse(query)
        return [r.server.id for r in rows if matches(r, terms)]

    assert hits("") == [1, 2, 3, 4]
    assert hits("status:failed") == [2]
    assert hits("s:failed,creating") == [2, 3]
    assert hits("status:inflight") == [3]
    assert hits("!status:ready") == [2, 3, 4]
    assert hits("loc:nbg1") == [3]
    assert hits("cus_002") == [2]
    assert hits("10.0.0.1") == [1]
    assert hits("ip:10.0.0.3 status:creating") == [3]
    assert hits("id:4") == [4]
    assert hits("nothing-matches") == []
    assert hits("unknown:key") == []  # free text "unknown:key"


def test_quick_filters_replace_the_status_term() -> None:
    assert with_status_term("cus_1 status:ready", "status:failed") == "status:failed cus_1"
    assert with_status_term("s:ready loc:fsn1", None) == "loc:fsn1"
    assert wants_deleted(parse("status:deleted"))
    assert not wants_deleted(parse("!status:deleted"))


# -- diff and model ---------------------------------------------------------------


def test_diff_tables() -> None:
    a = {"1": {"x": Cell("a")}, "2": {"x": Cell("b")}}
    b = {"2": {"x": Cell("B")}, "3": {"x": Cell("c")}}
    diff = diff_tables(a, b)
    assert diff.added == ["3"]
    assert diff.removed == ["1"]
    assert diff.changed == [("2", "x", Cell("B"))]
    assert diff.resort
    assert diff_tables(a, a).empty


def test_model_full_refresh_and_live_upsert() -> None:
    model = FleetModel(120, NOW)
    first = model.replace([row(1), row(2, "creating"), row(3, "deleted")])
    assert sorted(first.added) == ["1", "2"]  # deleted hidden
    assert model.ordered_keys() == ["2", "1"]  # newest first

    assert model.replace([row(1), row(2, "creating")]).empty  # nothing changed

    diff = model.upsert([row(2, "cloud_init")], [2])
    columns = {column for key, column, _ in diff.changed if key == "2"}
    assert {"status", "phase"} <= columns
    assert not diff.added and not diff.removed

    gone = model.upsert([row(2, "deleted")], [2])
    assert gone.removed == ["2"]
    vanished = model.upsert([], [1])  # requested, not returned: no longer exists
    assert vanished.removed == ["1"]
    assert model.visible == {}


def test_model_resorts_only_when_a_sort_key_moves() -> None:
    model = FleetModel(120, NOW)
    model.replace([row(1, "ready"), row(2, "creating"), row(3, "failed")])
    model.sort_by("status")
    assert model.ordered_keys() == ["2", "1", "3"]
    assert model.upsert([row(2, "creating", ipv4="10.9.9.9")], [2]).resort is False
    moved = model.upsert([row(2, "ready")], [2])
    assert moved.resort
    assert model.ordered_keys() == ["1", "2", "3"]
    model.sort_by("status")  # again: reversed
    assert model.ordered_keys() == ["3", "2", "1"]


def test_model_filter_deleted_and_marks() -> None:
    model = FleetModel(120, NOW)
    model.replace([row(1), row(2, "failed"), row(3, "failed"), row(4, "deleted")])
    model.toggle_mark("2")
    model.toggle_mark("1")
    assert [r.server.id for r in model.targets("3")] == [1, 2]
    diff = model.set_query("status:failed")
    assert diff.removed == ["1"]
    assert model.marked == {"2"}  # a hidden server is never acted on
    assert [r.server.id for r in model.targets("3")] == [2]
    model.clear_marks()
    assert [r.server.id for r in model.targets("3")] == [3]
    assert model.set_query("").added == ["1"]
    assert model.set_show_deleted(True).added == ["4"]
    assert model.include_deleted
    model.set_show_deleted(False)
    assert model.set_query("status:deleted").added == ["4"]


def test_model_tick_updates_running_times_only() -> None:
    model = FleetModel(120, NOW)
    model.replace([row(1, "creating"), row(2, "ready")])
    diff = model.tick(NOW + timedelta(seconds=5))
    changed = {(key, column) for key, column, _ in diff.changed}
    assert ("1", "in_phase") in changed and ("1", "total") in changed
    assert ("2", "total") not in changed  # ready: the recorded provisioning time
    assert isinstance(diff, TableDiff) and not diff.resort
    assert model.tick(NOW + timedelta(seconds=5)).empty


# -- summary, live, confirm -----------------------------------------------------


def test_percentiles_and_sla() -> None:
    assert percentile([], 50) is None
    assert percentile([10, 20, 30, 40], 50) == 25
    assert percentile([5], 95) == 5
    stats = summarize([30, 60, 90, 130], 120)
    assert stats.count == 4 and stats.sla_hit_rate == 0.75
    assert stats.p50 == 75


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


def test_live_message_decoding() -> None:
    assert server_ids(json.dumps({"type": "transition", "server_id": 7})) == 7
    assert server_ids(b"not json") is None
    assert server_ids(json.dumps({"type": "transition"})) is None
    assert server_ids(json.dumps({"server_id": 7})) is None  # not one of ours


def test_confirmation_word() -> None:
    assert confirmation_word([row(5)]) == "rachel-5"
    assert confirmation_word([row(5, name=None)]) == "5"
    assert confirmation_word([row(1), row(2), row(3)]) == "3"
    many = describe([row(i) for i in range(1, 15)])
    assert "rachel-10" in many and "and 4 more" in many
    assert replace(row(1).server, name=None).name is None
