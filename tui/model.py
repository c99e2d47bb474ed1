"""The fleet table's state and its diffs. Pure: no Textual, no database.

`FleetModel` holds every loaded row, the filter, the sort and the marks, and
answers each change (a full refresh, a few rows from a live event, a new
filter, the clock ticking) with a `TableDiff`: the rows to add and remove by
key and the cells that changed. The widget applies exactly that, so the
cursor and scroll position survive updates and 10,000 rows stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.domain.health import HealthState
from core.domain.lifecycle import IN_FLIGHT, Status
from tui.cells import SORT_KEYS, Cell, Row, health_of, render, time_cells
from tui.filters import Term, matches, parse, wants_deleted

Cells = dict[str, Cell]
#: The cells that change with time alone.
TIME_COLUMNS: tuple[str, ...] = ("in_phase", "total")


@dataclass(frozen=True)
class TableDiff:
    """What changed between two versions of a keyed table.

    Attributes:
        added: keys of new rows.
        removed: keys of rows that left.
        changed: (key, column, new cell) for rows present in both.
        resort: the order of rows may have changed (added rows, or a sort key moved).
    """

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[tuple[str, str, Cell]] = field(default_factory=list)
    resort: bool = False

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed or self.resort)


def diff_tables(
    old: Mapping[str, Mapping[str, Cell]], new: Mapping[str, Mapping[str, Cell]]
) -> TableDiff:
    """Rows added and removed by key, and changed cells, from `old` to `new`."""
    removed = [key for key in old if key not in new]
    added = [key for key in new if key not in old]
    changed = [
        (key, column, cell)
        for key, cells in new.items()
        if key in old
        for column, cell in cells.items()
        if old[key].get(column) != cell
    ]
    return TableDiff(added=added, removed=removed, changed=changed, resort=bool(added))


class FleetModel:
    """Rows, filter, sort and marks of the fleet table."""

    def __init__(self, sla_seconds: float, now: datetime) -> None:
        self.sla = sla_seconds
        self.now = now
        self.rows: dict[str, Row] = {}
        self.visible: dict[str, Cells] = {}
        self.marked: set[str] = set()
        self.query = ""
        self.terms: list[Term] = []
        self.show_deleted = False
        self.sort_column = "id"
        self.sort_reverse = True  # newest first

    # -- what is shown ------------------------------------------------------------

    @property
    def include_deleted(self) -> bool:
        """Whether deleted servers must be loaded (shown on request or filtered for)."""
        return self.show_deleted or wants_deleted(self.terms)

    def shows(self, row: Row) -> bool:
        """Whether `row` passes the deleted toggle and the filter."""
        if row.server.status == Status.DELETED and not self.include_deleted:
            return False
        return matches(row, self.terms)

    def _cells(self, key: str) -> Cells:
        return render(self.rows[key], self.now, self.sla, marked=key in self.marked)

    def _apply(
        self, keys: Iterable[str], old_rows: Mapping[str, Row | None], *, reuse: bool = False
    ) -> TableDiff:
        """Recompute the visibility and cells of `keys` and diff them.

        With `reuse`, rows already shown keep their cells (only visibility changed).
        """
        old: dict[str, Cells] = {}
        new: dict[str, Cells] = {}
        for key in keys:
            if key in self.visible:
                old[key] = self.visible[key]
            row = self.rows.get(key)
            if row is not None and self.shows(row):
                new[key] = old[key] if reuse and key in old else self._cells(key)
        diff = diff_tables(old, new)
        for key in diff.removed:
            del self.visible[key]
            self.marked.discard(key)  # never act on a server one can no longer see
        self.visible.update(new)
        sort_key = SORT_KEYS[self.sort_column]
        moved = any(
            (before := old_rows.get(key)) is not None
            and key in new
            and sort_key(before) != sort_key(self.rows[key])
            for key in old
        )
        if moved:
            return TableDiff(diff.added, diff.removed, diff.changed, resort=True)
        return diff

    def replace(self, rows: Iterable[Row], now: datetime | None = None) -> TableDiff:
        """A full refresh: `rows` is now the whole fleet."""
        if now is not None:
            self.now = now
        before: dict[str, Row | None] = dict(self.rows)
        self.rows = {row.key: row for row in rows}
        return self._apply(list(self.visible) + list(self.rows), before)

    def upsert(
        self, rows: Iterable[Row], requested: Iterable[int], now: datetime | None = None
    ) -> TableDiff:
        """Some servers re-read after live events; requested ids not returned are gone."""
        if now is not None:
            self.now = now
        keys = [str(server_id) for server_id in requested]
        before: dict[str, Row | None] = {key: self.rows.get(key) for key in keys}
        for key in keys:
            self.rows.pop(key, None)
        for row in rows:
            self.rows[row.key] = row
            if row.key not in keys:
                keys.append(row.key)
        return self._apply(keys, before)

    def set_query(self, query: str) -> TableDiff:
        """Filter by `query` (see `tui.filters`)."""
        self.query = query
        self.terms = parse(query)
        return self._apply(list(self.rows), {}, reuse=True)

    def set_show_deleted(self, show: bool) -> TableDiff:
        """Show or hide deleted servers (the caller reloads if `include_deleted` changed)."""
        self.show_deleted = show
        return self._apply(list(self.rows), {}, reuse=True)

    def tick(self, now: datetime) -> TableDiff:
        """The clock moved: the time cells of rows whose times still run."""
        self.now = now
        changed = []
        for key, cells in self.visible.items():
            server = self.rows[key].server
            if server.status not in IN_FLIGHT and cells["in_phase"].text[-1:] in ("h", "d"):
                continue  # hours-long durations change slowly; the safety refresh covers them
            fresh = time_cells(server, now, self.sla)
            for column in TIME_COLUMNS:
                if cells[column] != fresh[column]:
                    changed.append((key, column, fresh[column]))
                    cells[column] = fresh[column]
        return TableDiff(changed=changed)

    # -- sort and marks -----------------------------------------------------------

    def sort_by(self, column: str) -> None:
        """Sort by `column`; the same column again reverses the order."""
        if column not in SORT_KEYS:
            raise ValueError(f"cannot sort by {column!r}")
        if column == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = column, False

    def sort_value(self, key: str) -> Any:
        """The sort key of the row `key` under the current sort."""
        return SORT_KEYS[self.sort_column](self.rows[key])

    def ordered_keys(self) -> list[str]:
        """The visible rows' keys in display order."""
        return sorted(self.visible, key=self.sort_value, reverse=self.sort_reverse)

    def toggle_mark(self, key: str) -> TableDiff:
        """Mark or unmark a visible row (space)."""
        if key not in self.visible:
            return TableDiff()
        if key in self.marked:
            self.marked.discard(key)
        else:
            self.marked.add(key)
        cell = self._cells(key)["mark"]
        self.visible[key]["mark"] = cell
        return TableDiff(changed=[(key, "mark", cell)])

    def clear_marks(self) -> TableDiff:
        """Unmark every row."""
        keys, self.marked = list(self.marked), set()
        changed = []
        for key in keys:
            if key in self.visible:
                cell = self._cells(key)["mark"]
                self.visible[key]["mark"] = cell
                changed.append((key, "mark", cell))
        return TableDiff(changed=changed)

    def targets(self, cursor_key: str | None) -> list[Row]:
        """What an action applies to: the marked rows, else the row under the cursor."""
        keys = sorted(self.marked, key=int) if self.marked else [cursor_key] if cursor_key else []
        return [self.rows[k] for k in keys if k in self.visible]

    def counts(self) -> dict[str, int]:
        """Loaded servers per status (every status present)."""
        counts = {status.value: 0 for status in Status}
        for row in self.rows.values():
            counts[row.server.status] = counts.get(row.server.status, 0) + 1
        return counts

    def drift_counts(self) -> dict[str, int]:
        """Loaded live servers per reconciler finding (lost, stuck, orphan: kinds found only)."""
        found: dict[str, int] = {}
        for row in self.rows.values():
            if row.server.drift and row.server.status != Status.DELETED:
                found[row.server.drift] = found.get(row.server.drift, 0) + 1
        return found

    def health_counts(self) -> dict[str, int]:
        """Loaded ready servers per health state (every state present)."""
        counts = {state.value: 0 for state in HealthState}
        for row in self.rows.values():
            health = health_of(row.server)
            if health is not None:
                counts[health] = counts.get(health, 0) + 1
        return counts

    def in_flight(self) -> int:
        """How many loaded servers are provisioning."""
        return sum(1 for row in self.rows.values() if row.server.status in IN_FLIGHT)
