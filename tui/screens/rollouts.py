"""The rollout of a Rachel8 release: its waves, each server's outcome, and the operators' actions.

At the top the newest rollout (the live one, if any): its release and notes,
its state (the soak countdown, why it halted), the servers counted; then its
progress per wave, its servers in rollout order (enter opens one), its latest
steps, and below the recent rollouts and the releases. Pause, resume, abort
and roll back ask first, then call what `rachel-cloud rollout ...` calls
(`Operations.rollout_action`).
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from tui.cells import timestamp
from tui.messages import ServersChanged
from tui.rollout_reads import RolloutsData
from tui.rollout_view import (
    BUCKETS,
    confirmation,
    headline,
    release_cells,
    rollout_cells,
    state_line,
    target_cells,
    totals_line,
    wave_cells,
    wave_progress,
)
from tui.screens.base import LoadingScreen, PaletteCommand
from tui.screens.server import ServerScreen
from tui.widgets import add_columns, fill_table, titled_table

#: How often the screen reads the rollout again (fleet-level steps publish no live message).
REFRESH_SECONDS = 2.0
#: How often the soak countdown advances.
TICK_SECONDS = 1.0
#: Action name -> (verb for notifications, palette title).
ROLLOUT_ACTIONS: dict[str, tuple[str, str]] = {
    "pause": ("pause", "Pause the rollout"),
    "resume": ("resume", "Resume the rollout"),
    "abort": ("abort", "Abort the rollout"),
    "rollback": ("roll back", "Roll back every server the rollout switched"),
}
#: The reason an abort from here records (the CLI's `--reason`).
ABORT_REASON = "from the TUI"


class RolloutsScreen(LoadingScreen[RolloutsData]):
    """The newest rollout, live; the recent rollouts and the releases."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("p", "pause", "Pause"),
        Binding("r", "resume", "Resume"),
        Binding("A", "abort", "Abort", key_display="shift+a"),
        Binding("B", "rollback", "Roll back", key_display="shift+b"),
        Binding("enter", "open", "Open server", show=False),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    WRITE_ACTIONS = frozenset(ROLLOUT_ACTIONS)
    RELOAD_SECONDS = REFRESH_SECONDS

    def __init__(self) -> None:
        super().__init__()
        self.data: RolloutsData | None = None

    def compose_body(self) -> ComposeResult:
        yield Static("rollouts: loading…", id="rollout-head")
        yield from titled_table("Waves", "rollout-waves")
        yield from titled_table(
            "Servers, in rollout order (enter opens one)", "rollout-targets", rows=True
        )
        yield Static("", id="rollout-steps")
        with Horizontal(id="rollout-bottom"):
            with Vertical(id="rollout-recent-box"):
                yield from titled_table("Recent rollouts", "rollout-recent")
            with Vertical():
                yield from titled_table("Releases (* the fleet's current one)", "rollout-releases")

    def on_mount(self) -> None:
        add_columns(
            self.query_one("#rollout-waves", DataTable),
            ("WAVE", 10),
            ("SERVERS", 7),
            ("SHARE", 5),
            ("PROGRESS", 18),
            *[(bucket.upper(), max(7, len(bucket))) for bucket in BUCKETS],
        )
        targets = self.query_one("#rollout-targets", DataTable)
        add_columns(
            targets,
            ("SERVER", 6),
            ("NAME", 18),
            ("LOC", 5),
            ("WAVE", 7),
            ("STATE", 15),
            ("FROM → TO", 27),
            ("REASON", 60),
        )
        add_columns(
            self.query_one("#rollout-recent", DataTable),
            ("ID", 3),
            ("STATE", 12),
            ("RELEASE", 12),
            ("CREATED", 19),
            ("WHY", 20),
        )
        add_columns(
            self.query_one("#rollout-releases", DataTable),
            (" ", 1),
            ("COMMIT", 12),
            ("SERVERS", 7),
            ("ADDED", 19),
            ("NOTES", 30),
        )
        targets.focus()
        self.set_interval(TICK_SECONDS, self._show_head)

    # -- loading and showing -----------------------------------------------------

    def load(self) -> RolloutsData:
        return self.backend.load_rollouts()

    @on(ServersChanged)
    def _servers_changed(self) -> None:
        self.reload()  # a server's step may be the rollout's

    def show(self, data: RolloutsData) -> None:
        self.report_connection("database", True)
        before, self.data = self.data, data
        self._show_head()
        rollout = data.rollout
        if before is None or (before.rollout, before.targets) != (rollout, data.targets):
            waves = wave_progress(rollout, data.targets) if rollout else []
            fill_table(
                self.query_one("#rollout-waves", DataTable),
                [(str(w.wave), wave_cells(w)) for w in waves],
                "no wave",
            )
            fill_table(
                self.query_one("#rollout-targets", DataTable),
                [(str(t.server_id), target_cells(t)) for t in data.targets],
                "no server" if rollout else "no rollout yet",
            )
        if before is None or before.steps != data.steps:
            lines = [
                Text.assemble(
                    (f"{timestamp(step.at)} {step.actor}: ", "dim"), step.message.replace("\n", " ")
                )
                for step in data.steps
            ]
            self.query_one("#rollout-steps", Static).update(Text("\n").join(lines))
        if before is None or before.recent != data.recent:
            fill_table(
                self.query_one("#rollout-recent", DataTable),
                [(str(r.id), rollout_cells(r)) for r in data.recent],
                "no rollout yet",
            )
        if before is None or before.releases != data.releases:
            fill_table(
                self.query_one("#rollout-releases", DataTable),
                [(r.commit, release_cells(r)) for r in data.releases],
                "no release yet",
            )

    def _show_head(self) -> None:
        """The rollout, its state and countdown (every tick: the countdown moves)."""
        head = self.query_one("#rollout-head", Static)
        if self.data is None:
            return
        rollout = self.data.rollout
        if rollout is None:
            head.update(
                Text(
                    "no rollout yet: `rachel-cloud release add COMMIT`, then "
                    "`rachel-cloud rollout start COMMIT`",
                    style="dim",
                )
            )
            return
        waves = len({t.wave for t in self.data.targets if t.wave >= 0})
        text = headline(rollout)
        text.append("\n")
        text.append_text(state_line(rollout, waves, self.backend.now()))
        text.append("\n")
        text.append_text(totals_line(self.data.targets))
        head.update(text)

    # -- actions -----------------------------------------------------------------

    def _ask(self, action: str) -> None:
        """Confirm `action` with the operator, then run it."""
        verb = ROLLOUT_ACTIONS[action][0]
        if self.data is None:
            self.notify("rollouts not loaded yet", severity="warning")
            return
        rollout = self.data.rollout
        if rollout is None:
            self.notify(f"no rollout yet: nothing to {verb}", severity="warning")
            return
        question, body = confirmation(action, rollout, self.data.targets)
        self.ask_first(question, body, verb, lambda: self._run(action))

    @work(thread=True, group="rollout-action", exit_on_error=False)
    def _run(self, action: str) -> None:
        """Call the CLI's function for `action`; report the outcome or the refusal."""
        reason = ABORT_REASON if action == "abort" else None
        self.report_outcome(
            ROLLOUT_ACTIONS[action][0], lambda: self.backend.run_rollout_action(action, reason)
        )

    def action_pause(self) -> None:
        self._ask("pause")

    def action_resume(self) -> None:
        self._ask("resume")

    def action_abort(self) -> None:
        self._ask("abort")

    def action_rollback(self) -> None:
        self._ask("rollback")

    def action_open(self) -> None:
        table = self.query_one("#rollout-targets", DataTable)
        if self.data is None or not self.data.targets or not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        if key is not None:
            self.app.push_screen(ServerScreen(int(key)))

    @on(DataTable.RowSelected, "#rollout-targets")
    def _selected(self) -> None:
        self.action_open()

    def palette_commands(self) -> list[PaletteCommand]:
        keys = {"pause": "p", "resume": "r", "abort": "shift+a", "rollback": "shift+b"}
        commands = [
            PaletteCommand(title, f"{keys[n]}, asks first", getattr(self, f"action_{n}"), True)
            for n, (_, title) in ROLLOUT_ACTIONS.items()
        ]
        return [
            *commands,
            PaletteCommand("Open server", "enter: its timeline", self.action_open, False),
            PaletteCommand("Reload rollouts", "ctrl+r", self.action_reload, False),
            PaletteCommand("Back to the fleet", "escape", self.action_back, False),
        ]
