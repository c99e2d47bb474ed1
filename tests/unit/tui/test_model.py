"""The fleet model: the table diff, refreshes, live upserts, sorting, marks, ticks."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.tui.rows import NOW, row
from tui.cells import Cell
from tui.model import FleetModel, TableDiff, diff_tables


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


def test_health_counts_and_a_live_health_change() -> None:
    model = FleetModel(120, NOW)
    model.replace(
        [
            row(1, health="healthy"),
            row(2, health="healthy"),
            row(3, health="unhealthy"),
            row(4, "failed", health="unhealthy"),  # not ready: not counted
            row(5, "creating"),
        ]
    )
    assert model.health_counts() == {"healthy": 2, "degraded": 0, "unhealthy": 1, "unknown": 0}
    model.sort_by("health")
    assert model.ordered_keys()[:3] == ["3", "1", "2"]
    diff = model.upsert([row(1, health="unhealthy", health_reason="VPS unreachable")], [1])
    assert ("1", "health", Cell("unhealthy", "bold red")) in diff.changed
    assert diff.resort
    assert model.health_counts()["unhealthy"] == 2
    assert sorted(model.set_query("health:unhealthy").removed) == ["2", "4", "5"]
    assert sorted(model.visible) == ["1", "3"]
