"""The operator TUI: a live fleet view, k9s-style (`rachel-cloud tui`).

Threads: the UI thread only renders. Every database or Redis call runs in a
`@work(thread=True)` worker, which hands its result back with
`call_from_thread`. One long-running worker listens on the events channel
(`tui.live`); a lost database or Redis shows a banner and the workers retry
until it is back.

The app is the only module that knows the screens by name (it imports them;
they never import it). State they share is the app's `session` and reactive
`connections`; what happens is said with `tui.messages`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from textual import on, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import get_current_worker

from tui.backend import Backend, describe_error
from tui.cells import Row
from tui.live import listen
from tui.messages import (
    ActionRequested,
    ActionsFinished,
    ConnectionChanged,
    ConnectionReport,
    ServersChanged,
)
from tui.screens.base import RachelScreen
from tui.screens.confirm import ConfirmAction, ConfirmDestroy
from tui.screens.fleet import FleetScreen
from tui.screens.help import HelpScreen
from tui.state import Connections, Session

#: Action name -> (verb for notifications, palette title).
ACTIONS: dict[str, tuple[str, str]] = {
    "retry": ("retry", "Retry failed server(s)"),
    "reinject": ("re-inject", "Re-inject secrets"),
    "deprovision": ("force deprovision", "Force deprovision (asks for confirmation)"),
}


class RachelApp(App[None]):
    """The fleet TUI.

    Its screens see it as a `ScreenHost` (`session`, `connections`); it sees them
    as `RachelScreen`s. What they tell each other goes by messages.
    """

    CSS_PATH = "styles/app.tcss"
    #: Narrow terminals (80 columns) drop the sparkline for the summary's sake.
    #: (Textual types it as an instance attribute, so no ClassVar here.)
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012
    TITLE = "rachel-cloud"
    BINDINGS: ClassVar[list[BindingType]] = [
        # Textual's Ctrl-C only says "press q to quit"; under `up` the operator
        # expects it to stop everything (the stack stops when the TUI returns).
        # Priority: it quits from the filter field and dialogs too.
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Keys", key_display="?"),
    ]

    #: Which connections are lost; every screen's banner shows it.
    connections: reactive[Connections] = reactive(Connections, init=False)

    def __init__(
        self,
        backend: Backend,
        *,
        readonly: bool = False,
        live: bool = True,
        refresh_seconds: float = 30.0,
        summary_seconds: float = 5.0,
        tick_seconds: float = 1.0,
    ) -> None:
        super().__init__()
        self.session = Session(backend, readonly, refresh_seconds, summary_seconds, tick_seconds)
        self.live = live
        self.live_connected = False
        self.fleet = FleetScreen()
        self.sub_title = f"{backend.actor}{'  [READ-ONLY]' if readonly else ''}"

    @property
    def readonly(self) -> bool:
        """Actions are disabled for this session."""
        return self.session.readonly

    def get_default_screen(self) -> Screen[None]:
        return self.fleet

    def on_mount(self) -> None:
        if self.live:
            self.listen_events()

    def _broadcast(self, message: Callable[[], Message]) -> None:
        """Post a fresh `message()` to every screen on the stack (a message is delivered once)."""
        for screen in self.screen_stack:
            screen.post_message(message())

    # -- connection state ---------------------------------------------------------

    def set_connection(self, kind: str, ok: bool, reason: str = "") -> None:
        """Record that `kind` ("database" or "redis") is reachable or lost."""
        self.connections = self.connections.update(kind, ok, reason)

    @on(ConnectionReport)
    def _connection_report(self, event: ConnectionReport) -> None:
        self.set_connection(event.kind, event.ok, event.reason)

    def watch_connections(self, before: Connections, now: Connections) -> None:
        recovered = now.recovered_since(before)
        self._broadcast(lambda: ConnectionChanged(now, recovered=recovered))

    def _on_live_connection(self, ok: bool, reason: str) -> None:
        self.live_connected = ok
        self.set_connection("redis", ok, reason)

    def _on_live_batch(self, ids: set[int]) -> None:
        self._broadcast(lambda: ServersChanged(ids))

    @work(thread=True, exclusive=True, group="live", exit_on_error=False)
    def listen_events(self) -> None:
        """Subscribe to the events channel until the app exits."""
        worker = get_current_worker()

        def stopped() -> bool:
            return worker.is_cancelled or not self.is_running

        def batch(ids: set[int]) -> None:
            if not stopped():
                self.call_from_thread(self._on_live_batch, ids)

        def connection(ok: bool, reason: str) -> None:
            if not stopped():
                self.call_from_thread(self._on_live_connection, ok, reason)

        listen(self.session.backend.redis, batch, connection, stopped)

    # -- actions ----------------------------------------------------------------

    @on(ActionRequested)
    def _action_requested(self, event: ActionRequested) -> None:
        self.request_action(event.action, event.rows)

    def request_action(self, action: str, rows: Sequence[Row]) -> None:
        """Run `action` on `rows` once the operator confirms it."""
        if self.readonly:
            self.notify("read-only mode: actions are disabled", severity="warning")
            return
        if not rows:
            self.notify("no server selected", severity="warning")
            return
        ids = [row.server.id for row in rows]

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.run_actions(action, ids)
            else:
                self.notify(f"{ACTIONS[action][0].removeprefix('force ')} cancelled")

        # Every action changes servers someone relies on: none runs on one key.
        confirm = ConfirmDestroy(rows) if action == "deprovision" else ConfirmAction(action, rows)
        self.push_screen(confirm, confirmed)

    @work(thread=True, group="actions", exit_on_error=False)
    def run_actions(self, action: str, ids: list[int]) -> None:
        """Call the operator function for each server; report in one notification."""
        done: list[str] = []
        refused: list[str] = []
        reason = "forced deprovision from the TUI"
        for server_id in ids:
            try:
                done.append(self.session.backend.run_action(action, server_id, reason))
            except Exception as exc:
                refused.append(describe_error(exc))
        self.call_from_thread(self._report, action, done, refused, ids)

    def _report(self, action: str, done: list[str], refused: list[str], ids: list[int]) -> None:
        verb = ACTIONS[action][0]
        lines = [*done, *refused]
        if len(ids) > 1:
            lines.insert(0, f"{verb}: {len(done)} done, {len(refused)} refused")
        shown = lines[:8] + ([f"... and {len(lines) - 8} more"] if len(lines) > 8 else [])
        severity: SeverityLevel = "error" if not done else "warning" if refused else "information"
        self.notify("\n".join(shown), title=verb, severity=severity, timeout=8)
        self._broadcast(lambda: ActionsFinished(action, ids))
        self._broadcast(lambda: ServersChanged(ids))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Read-only: not offered at all (False, not None): footer and help leave it out.
        return not (self.readonly and action in ACTIONS)

    # -- help and command palette -------------------------------------------------

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss()
            return
        self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, RachelScreen):
            for command in screen.palette_commands():
                if not (command.is_action and self.readonly):
                    yield SystemCommand(command.title, command.help, command.callback)
