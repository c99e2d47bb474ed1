"""The fleet screen: every server, live, with a summary bar, filter, sort and marks."""

from __future__ import annotations

import time
from collections.abc import Collection
from functools import partial
from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Sparkline, Static
from textual.worker import get_current_worker

from tui.backend import Summary
from tui.cells import COLUMNS, SORTABLE, Row
from tui.filters import QUICK_FILTERS, with_quick_term
from tui.messages import ActionsFinished, ConnectionChanged, ServersChanged
from tui.model import FleetModel, TableDiff
from tui.screens.base import PaletteCommand, ServerActionsScreen
from tui.screens.jobs import JobsScreen
from tui.screens.pool import PoolScreen
from tui.screens.rollouts import RolloutsScreen
from tui.screens.server import ServerScreen
from tui.state import KINDS
from tui.summary import summary_text
from tui.widgets import FleetTable

#: How often the screen checks whether a refresh is due (and retries a lost database).
POLL_SECONDS = 2.0
#: Rows drawn first when a fleet is larger (a few screens' worth, newest first).
FIRST_PAGE = 200
#: The screen's only actions while the filter field has focus (escape leaves it).
FILTER_ACTIONS = frozenset({"clear"})


class FleetScreen(ServerActionsScreen):
    """One row per server; `enter` opens it, `j` `o` `p`: the jobs, rollouts, pool screens."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # The footer lists keys in this order and cuts what does not fit (80
        # columns): `j` first, after the base screen's `q` and `?`.
        Binding("j", "jobs", "Jobs"),
        Binding("o", "rollouts", "Rollouts"),
        Binding("p", "pool", "Pool"),
        Binding("enter", "open", "Open", show=False),
        # Priority: the app runs it as it reads the key, before it routes the next
        # keys (a paste, tmux send-keys), so those reach the filter, not the table.
        Binding("slash", "filter", "Filter", key_display="/", priority=True),
        Binding("escape", "clear", "Clear", show=False),
        Binding("space", "mark", "Mark"),
        Binding("u", "unmark", "Unmark all", show=False),
        Binding("r", "retry", "Retry"),
        Binding("i", "reinject", "Re-inject"),
        Binding("D", "deprovision", "Deprovision", key_display="shift+d"),
        Binding("s", "sort_next", "Sort"),
        Binding("S", "sort_reverse", "Reverse", show=False),
        Binding("a", "toggle_deleted", "Deleted"),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
        *[
            Binding(key, f"quick('{key}')", f"show {term or 'all'}", show=False)
            for key, term in QUICK_FILTERS.items()
        ],
    ]

    def __init__(self) -> None:
        super().__init__()
        self.model: FleetModel | None = None
        self.summary: Summary | None = None
        self._last_refresh = 0.0
        self._last_summary = 0.0
        self._loaded_deleted = False
        self.refreshes = 0  # full refreshes applied (tests wait on it)
        self.pages = 0  # first pages drawn before a large fleet's full load
        self.live_batches = 0  # live batches applied

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="summary-row"):
            yield Static(id="summary")
            yield Sparkline([], id="sparkline")
        yield Input(
            placeholder="filter: text, status:failed, health:unhealthy, loc:fsn1, !status:ready",
            id="filter",
        )
        yield FleetTable(id="fleet")

    def on_mount(self) -> None:
        session = self.session
        self.model = FleetModel(self.backend.sla_seconds, self.backend.now())
        self.query_one("#filter", Input).display = False
        self.query_one(FleetTable).focus()
        self.set_interval(min(POLL_SECONDS, session.refresh_seconds), self._poll)
        self.set_interval(session.tick_seconds, self._tick)
        self.request_refresh()

    # -- loading ------------------------------------------------------------------

    def _poll(self) -> None:
        now = time.monotonic()
        session = self.session
        lost = "database" in self.host.connections.lost
        if lost or now - self._last_refresh >= session.refresh_seconds:
            self.request_refresh()
        elif now - self._last_summary >= session.summary_seconds:
            self.load_summary()

    def reload(self) -> None:
        self.request_refresh()

    def request_refresh(self) -> None:
        """Reload the whole fleet (the safety net under the live updates) and the summary."""
        self._last_refresh = self._last_summary = time.monotonic()
        if self.model is not None:
            self.load_fleet(self.model.include_deleted)
            self.load_summary()

    @work(thread=True, exclusive=True, group="fleet", exit_on_error=False)
    def load_fleet(self, include_deleted: bool) -> None:
        app, backend = self.app, self.backend
        try:
            if not self.refreshes and not self.pages:
                # A large fleet's first screen is drawn before the rest is read
                # and laid out (a 10,000-row load took ~2 s before anything showed).
                page = backend.load_fleet(include_deleted, limit=FIRST_PAGE)
                if get_current_worker().is_cancelled:
                    return
                if len(page) < FIRST_PAGE:  # that was the whole fleet
                    app.call_from_thread(self._apply_full, page, include_deleted)
                    return
                app.call_from_thread(self._apply_page, page)
            rows = backend.load_fleet(include_deleted)
        except Exception as exc:
            self.report_error(exc)
            return
        if not get_current_worker().is_cancelled:
            app.call_from_thread(self._apply_full, rows, include_deleted)

    def _apply_full(self, rows: list[Row], include_deleted: bool) -> None:
        if self.model is None:
            return
        self._loaded_deleted = include_deleted
        self.report_connection("database", True)
        diff = self.model.replace(rows, self.backend.now())
        self.query_one(FleetTable).apply(diff, self.model)
        self.refreshes += 1
        self._show_summary()

    def _apply_page(self, rows: list[Row]) -> None:
        if self.model is None or self.refreshes:
            return  # the full load came first
        self.report_connection("database", True)
        diff = self.model.replace(rows, self.backend.now())
        self.query_one(FleetTable).apply(diff, self.model)
        self.pages += 1
        self.notify(f"showing the newest {len(rows)} servers; loading the rest…", timeout=2)

    def rows_changed(self, ids: Collection[int]) -> None:
        """Servers changed (live events, actions): re-read just those."""
        if ids:
            self.load_rows(sorted(ids))

    @on(ServersChanged)
    def _servers_changed(self, event: ServersChanged) -> None:
        self.rows_changed(event.ids)

    @on(ActionsFinished)
    def _actions_finished(self) -> None:
        self.clear_marks()

    @on(ConnectionChanged)
    def _catch_up(self, event: ConnectionChanged) -> None:
        if event.recovered:
            self.request_refresh()  # whatever changed while it was lost was missed

    @work(thread=True, group="rows", exit_on_error=False)
    def load_rows(self, ids: list[int]) -> None:
        app = self.app
        try:
            rows = self.backend.load_rows(ids)
        except Exception as exc:
            self.report_error(exc)
            return
        app.call_from_thread(self._apply_rows, rows, ids)

    def _apply_rows(self, rows: list[Row], ids: list[int]) -> None:
        if self.model is None:
            return
        diff = self.model.upsert(rows, ids, self.backend.now())
        self.query_one(FleetTable).apply(diff, self.model)
        self.live_batches += 1
        self._show_summary()

    @work(thread=True, exclusive=True, group="summary", exit_on_error=False)
    def load_summary(self) -> None:
        summary, lost = self.backend.load_summary()
        self.app.call_from_thread(self._apply_summary, summary, lost)

    def _apply_summary(self, summary: Summary, lost: list[str]) -> None:
        self._last_summary = time.monotonic()
        for kind in KINDS:
            if kind in lost:
                self.report_connection(kind, False, f"{kind} not answering")
            elif kind == "database":
                self.report_connection(kind, True)
        self.summary = summary
        if summary.recent:
            self.query_one(Sparkline).data = summary.recent
        self._show_summary()

    def _show_summary(self) -> None:
        if self.model is None:
            return
        self.query_one("#summary", Static).update(
            summary_text(
                self.summary,
                self.model.counts(),  # the rows' own counts: never behind the table
                self.model.drift_counts(),
                health=self.model.health_counts(),
                sla_seconds=self.model.sla,
                shown=len(self.model.visible),
                marked=len(self.model.marked),
            )
        )

    def _tick(self) -> None:
        if self.model is not None:
            self.query_one(FleetTable).apply(self.model.tick(self.backend.now()), self.model)

    # -- filter, sort, marks ------------------------------------------------------

    def _apply(self, diff: TableDiff, *, force_sort: bool = False) -> None:
        assert self.model is not None
        self.query_one(FleetTable).apply(diff, self.model, force_sort=force_sort)
        if self.model.include_deleted and not self._loaded_deleted:
            self.request_refresh()
        self._show_summary()

    def set_filter(self, query: str) -> None:
        """Filter the table (as if typed after `/`)."""
        if self.model is None:
            return
        self.query_one("#filter", Input).value = query
        self._apply(self.model.set_query(query))

    def filter_focused(self) -> bool:
        """Whether keys are going to the filter field."""
        return self.focused is self.query_one("#filter", Input)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While the filter has the keys, they are text: no screen binding may act
        # on them (escape still leaves the field; `/` is typed like any letter).
        if self.filter_focused() and action not in FILTER_ACTIONS:
            return False
        return super().check_action(action, parameters)

    def action_filter(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = True
        # Focus now, not at the next idle (`Widget.focus`): keys already queued
        # behind `/` are routed to whatever has focus when the app reads them.
        self.set_focus(field)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self.model is not None and event.value != self.model.query:
            self._apply(self.model.set_query(event.value))

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        field = self.query_one("#filter", Input)
        field.display = bool(field.value)
        self.set_focus(self.query_one(FleetTable))

    def action_clear(self) -> None:
        """Escape: leave the filter field, else clear the filter, else the marks."""
        field = self.query_one("#filter", Input)
        if field.has_focus:
            self._filter_done()
        elif self.model is not None and self.model.query:
            self.set_filter("")
            field.display = False
        else:
            self.action_unmark()

    def action_quick(self, key: str) -> None:
        if self.model is not None:
            query = with_quick_term(self.model.query, QUICK_FILTERS.get(key))
            self.set_filter(query)
            self.query_one("#filter", Input).display = bool(query)

    def action_toggle_deleted(self) -> None:
        if self.model is not None:
            self._apply(self.model.set_show_deleted(not self.model.show_deleted))
            self.notify(f"deleted servers {'shown' if self.model.show_deleted else 'hidden'}")

    def sort_by(self, column: str) -> None:
        """Sort by `column` (again: reverse)."""
        if self.model is not None:
            self.model.sort_by(column)
            self._apply(TableDiff(), force_sort=True)
            label = "desc" if self.model.sort_reverse else "asc"
            self.sub_title = f"sorted by {column} {label}"

    def action_sort_next(self) -> None:
        if self.model is not None:
            i = SORTABLE.index(self.model.sort_column)
            self.sort_by(SORTABLE[(i + 1) % len(SORTABLE)])

    def action_sort_reverse(self) -> None:
        if self.model is not None:
            self.sort_by(self.model.sort_column)

    @on(DataTable.HeaderSelected)
    def _header(self, event: DataTable.HeaderSelected) -> None:
        column = event.column_key.value
        if column in SORTABLE:
            self.sort_by(column)

    def action_mark(self) -> None:
        key = self.query_one(FleetTable).cursor_key()
        if self.model is not None and key is not None:
            self._apply(self.model.toggle_mark(key))
            self.query_one(FleetTable).action_cursor_down()

    def action_unmark(self) -> None:
        if self.model is not None and self.model.marked:
            self._apply(self.model.clear_marks())

    def clear_marks(self) -> None:
        """Unmark every row (after a bulk action)."""
        self.action_unmark()

    # -- actions and navigation -----------------------------------------------------

    def targets(self) -> list[Row]:
        """The marked rows, else the row under the cursor."""
        if self.model is None:
            return []
        return self.model.targets(self.query_one(FleetTable).cursor_key())

    def action_refresh(self) -> None:
        self.request_refresh()

    def action_open(self) -> None:
        key = self.query_one(FleetTable).cursor_key()
        if key is not None:
            self.app.push_screen(ServerScreen(int(key)))

    @on(DataTable.RowSelected, "#fleet")
    def _selected(self) -> None:
        self.action_open()

    def action_jobs(self) -> None:
        self.app.push_screen(JobsScreen())

    def action_rollouts(self) -> None:
        self.app.push_screen(RolloutsScreen())

    def action_pool(self) -> None:
        self.app.push_screen(PoolScreen())

    def palette_commands(self) -> list[PaletteCommand]:
        """Every fleet action, for the command palette."""
        commands = [
            PaletteCommand(
                "Retry failed server(s)",
                "r: marked servers, else the selected one",
                self.action_retry,
                True,
            ),
            PaletteCommand(
                "Re-inject secrets", "i: into ready servers", self.action_reinject, True
            ),
            PaletteCommand(
                "Force deprovision",
                "D: destroys the VPS, asks first",
                self.action_deprovision,
                True,
            ),
            PaletteCommand("Open server", "enter: timeline, events, jobs", self.action_open, False),
            PaletteCommand(
                "Jobs screen", "j: queues, workers, failed jobs", self.action_jobs, False
            ),
            PaletteCommand(
                "Rollouts screen",
                "o: the release rollout, its waves and servers; pause, abort, roll back",
                self.action_rollouts,
                False,
            ),
            PaletteCommand(
                "Pool & images screen",
                "p: the warm pool's places, targets and servers, the images, their cost; refill",
                self.action_pool,
                False,
            ),
            PaletteCommand("Filter", "/: text or status:failed terms", self.action_filter, False),
            PaletteCommand("Toggle deleted servers", "a", self.action_toggle_deleted, False),
            PaletteCommand("Mark / unmark server", "space", self.action_mark, False),
            PaletteCommand("Clear marks", "u", self.action_unmark, False),
            PaletteCommand("Refresh now", "ctrl+r", self.action_refresh, False),
        ]
        for column in COLUMNS[1:]:
            commands.append(
                PaletteCommand(
                    f"Sort by {column.label.lower()}",
                    "again to reverse",
                    partial(self.sort_by, column.key),
                    False,
                )
            )
        for key, term in QUICK_FILTERS.items():
            commands.append(
                PaletteCommand(
                    f"Show {term or 'all'}", f"key {key}", partial(self.action_quick, key), False
                )
            )
        return commands
