"""Widgets shared by the screens: the fleet table (applies diffs) and the banner."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Label, Static
from textual.widgets.data_table import ColumnKey, DuplicateKey, RowKey
from textual.widgets.data_table import Row as TableRow

from tui.cells import COLUMNS, Cell
from tui.model import FleetModel, TableDiff

#: Beyond this many rows leaving or arriving at once, rebuilding is cheaper than
#: removing them one by one (each removal renumbers every row).
REBUILD_THRESHOLD = 200


@functools.lru_cache(maxsize=16384)
def to_text(cell: Cell) -> Text:
    """A cell as Rich text (shared between equal cells: the table never changes them)."""
    return Text(cell.text, style=cell.style, no_wrap=True, overflow="ellipsis")


class LazyCell:
    """A table cell that becomes Rich text only when drawn.

    The table draws the rows on screen; building Rich text for every cell of
    10,000 rows up front was a fifth of the first paint. `str()` is the text.
    """

    __slots__ = ("cell",)

    def __init__(self, cell: Cell) -> None:
        self.cell = cell

    def __rich__(self) -> Text:
        return to_text(self.cell)

    def __str__(self) -> str:
        return self.cell.text

    def __repr__(self) -> str:
        return f"LazyCell({self.cell.text!r})"


def add_columns(table: DataTable[object], *columns: tuple[str, int]) -> None:
    """Add fixed-width columns, keyed by their lower-cased labels."""
    for label, width in columns:
        table.add_column(label, key=label.lower(), width=width)


def titled_table(title: str, table_id: str, *, rows: bool = False) -> ComposeResult:
    """A section's title and its table (`rows`: a row cursor and zebra stripes, else none)."""
    yield Label(title, classes="section")
    yield DataTable(id=table_id, cursor_type="row" if rows else "none", zebra_stripes=rows)


def fill_table(table: DataTable[Text], rows: list[tuple[str, list[Cell]]], empty: str) -> None:
    """Replace `table`'s rows (keyed), keeping the cursor on the row it was on."""
    selected = None
    if table.row_count and table.cursor_row < table.row_count:
        selected = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    table.clear()
    for key, cells in rows:
        table.add_row(*(to_text(c) for c in cells), key=key)
    if not rows:
        table.add_row(Text(empty, style="dim"), *[Text("")] * (len(table.columns) - 1))
    elif selected is not None and selected in table.rows:
        table.move_cursor(row=table.get_row_index(selected), scroll=False)


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


class FleetTable(DataTable[LazyCell]):
    """The fleet: one row per server, keyed by server id, updated by diffs."""

    # DataTable's home/end move to the first/last column; with a row cursor that
    # only scrolled sideways. Here they go to the first and last server.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("home", "scroll_top", "First row", show=False),
        Binding("end", "scroll_bottom", "Last row", show=False),
    ]

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

    def _row_cells(self, model: FleetModel, key: str) -> list[LazyCell]:
        cells = model.visible[key]
        return [LazyCell(cells[column.key]) for column in COLUMNS]

    def rebuild(self, model: FleetModel) -> None:
        """Replace every row with the model's visible rows, in order."""
        self.clear()
        self._append_rows([(key, self._row_cells(model, key)) for key in model.ordered_keys()])

    # DataTable.add_row and update_cell work one cell at a time: each add_row
    # recomputes the column order and re-checks the cursor, each update_cell
    # asks for a repaint. With 10,000 rows (and 10,000 time cells changing every
    # second) that per-call overhead was most of a full load. These do the same
    # bookkeeping (textual==8.2.8, pinned) once per batch.

    def _append_rows(self, rows: list[tuple[str, list[LazyCell]]]) -> None:
        """Add rows at the bottom, as add_row does for each."""
        was_empty = self.row_count == 0
        columns = [column.key for column in self.ordered_columns]
        for key, cells in rows:
            row_key = RowKey(key)
            if row_key in self._row_locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            self._row_locations[row_key] = len(self.rows)
            self._data[row_key] = dict(zip(columns, cells, strict=True))
            self.rows[row_key] = TableRow(row_key, 1, None, False)
            self._new_rows.add(row_key)
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if was_empty and self.row_count and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()
        self._update_count += 1
        self.check_idle()

    def _update_cells(self, changes: Iterable[tuple[str, str, Cell]]) -> None:
        """Set cells of existing rows, as update_cell does for each, with one repaint."""
        for row_key, column, cell in changes:
            key = RowKey(row_key)
            if key in self._row_locations:
                self._data[key][ColumnKey(column)] = LazyCell(cell)
        self._update_count += 1
        self.refresh()

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
            if diff.changed:
                self._update_cells(c for c in diff.changed if c[0] not in added)
            new_rows = [key for key in dict.fromkeys(diff.added) if key not in self.rows]
            if new_rows:
                self._append_rows([(key, self._row_cells(model, key)) for key in new_rows])
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
