"""Widgets shared by the screens: the fleet table (applies diffs) and the banner."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from rich.text import Text
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowKey

from tui.cells import COLUMNS, Cell
from tui.model import FleetModel, TableDiff

#: Beyond this many rows leaving or arriving at once, rebuilding is cheaper than
#: removing them one by one (each removal renumbers every row).
REBUILD_THRESHOLD = 200


def to_text(cell: Cell) -> Text:
    """A cell as Rich text."""
    return Text(cell.text, style=cell.style, no_wrap=True, overflow="ellipsis")


def add_columns(table: DataTable[object], *columns: tuple[str, int]) -> None:
    """Add fixed-width columns, keyed by their lower-cased labels."""
    for label, width in columns:
        table.add_column(label, key=label.lower(), width=width)


class ConnectionBanner(Static):
    """Shown while the database or Redis is unreachable; hidden otherwise."""

    def show_lost(self, lost: Mapping[str, str]) -> None:
        """Show which connections are lost (empty: hide)."""
        if not lost:
            self.update("")
            self.remove_class("lost")
            return
        parts = [f"{kind} unreachable ({reason[:80]})" for kind, reason in sorted(lost.items())]
        self.update("⚠ " + "; ".join(parts) + " - reconnecting, data may be stale")
        self.add_class("lost")


class FleetTable(DataTable[Text]):
    """The fleet: one row per server, keyed by server id, updated by diffs."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for column in COLUMNS:
            self.add_column(column.label, key=column.key, width=column.width)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        # Every column has a fixed width and every row a height of 1, so the
        # per-cell measuring DataTable does for new rows (100,000 cells for
        # 10,000 servers, seconds on the UI thread) cannot change anything.
        super()._update_dimensions(())

    def cursor_key(self) -> str | None:
        """The key of the row under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:  # textual raises CellDoesNotExist on a stale coordinate
            return None
        return row_key.value

    def _row_cells(self, model: FleetModel, key: str) -> list[Text]:
        cells = model.visible[key]
        return [to_text(cells[column.key]) for column in COLUMNS]

    def rebuild(self, model: FleetModel) -> None:
        """Replace every row with the model's visible rows, in order."""
        self.clear()
        for key in model.ordered_keys():
            self.add_row(*self._row_cells(model, key), key=key)

    def resort(self, model: FleetModel) -> None:
        """Order rows as the model says."""
        self.sort("id", key=lambda cell: model.sort_value(str(cell)), reverse=model.sort_reverse)

    def apply(self, diff: TableDiff, model: FleetModel, *, force_sort: bool = False) -> None:
        """Apply a diff, keeping the cursor on its row and that row where it was on screen."""
        if diff.empty and not force_sort:
            return
        key = self.cursor_key()
        old_index = self.cursor_row
        if len(diff.removed) > REBUILD_THRESHOLD or len(diff.added) > REBUILD_THRESHOLD:
            self.rebuild(model)
        else:
            for gone in diff.removed:
                if gone in self.rows:
                    self.remove_row(gone)
            added = set(diff.added)
            for row_key, column, cell in diff.changed:
                if row_key in self.rows and row_key not in added:
                    self.update_cell(row_key, column, to_text(cell))
            for new in diff.added:
                if new not in self.rows:
                    self.add_row(*self._row_cells(model, new), key=new)
            if diff.resort or force_sort:
                self.resort(model)
        self._restore_cursor(key, old_index)

    def _restore_cursor(self, key: str | None, old_index: int) -> None:
        if key is None or key not in self.rows:
            return
        new_index = self.get_row_index(key)
        if new_index == old_index and self.cursor_row == new_index:
            return
        shift = new_index - old_index
        self.move_cursor(row=new_index, scroll=False)
        if shift:
            self.scroll_to(y=max(0, self.scroll_y + shift), animate=False, immediate=True)
