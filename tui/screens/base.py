"""What the fleet, server and jobs screens share, and the interface the app uses.

A `RachelScreen` is framed the same way (header, connection banner, the screen's
body, footer), reads the session and connection state through `host` (typed: the
screens never import the app), reports what its reads found and asks for actions
with messages, and shows the app's `ConnectionChanged` on its banner. The app, in
turn, knows screens only as `RachelScreen`: `reload`, `palette_commands`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widgets import Footer, Header

from tui.backend import Backend, classify, describe_error
from tui.cells import Row
from tui.messages import ActionRequested, ConnectionChanged, ConnectionReport
from tui.screens.confirm import ConfirmChoice
from tui.state import Connections, Session
from tui.widgets import ConnectionBanner

DataT = TypeVar("DataT")

#: The operator actions on servers, by their action names.
SERVER_ACTIONS = frozenset({"retry", "reinject", "deprovision"})


class PaletteCommand(NamedTuple):
    """One entry of the command palette."""

    title: str
    help: str
    callback: Callable[[], object]
    #: Changes something: left out in read-only mode.
    is_action: bool


@runtime_checkable
class ScreenHost(Protocol):
    """The app, as its screens see it."""

    @property
    def session(self) -> Session:
        """The backend and the run's settings."""
        ...

    @property
    def connections(self) -> Connections:
        """Which connections are lost now."""
        ...


class RachelScreen(Screen[None]):
    """A main screen: header, connection banner, body, footer; reloadable."""

    # The app's keys, again here so the footer lists them first: it cuts what
    # does not fit, and at 80 columns the app's own bindings came last and fell off.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "app.help", "Keys", key_display="?"),
    ]

    #: Actions that change something: not offered in read-only mode.
    WRITE_ACTIONS: ClassVar[frozenset[str]] = frozenset()

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield ConnectionBanner(id="banner")
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        """The screen's own widgets, between the banner and the footer."""
        yield from ()

    def on_mount(self) -> None:
        # Textual runs this after a subclass's on_mount, not instead of it.
        self.query_one(ConnectionBanner).show_lost(self.host.connections.lost)

    # -- what the screens read ------------------------------------------------------

    @property
    def host(self) -> ScreenHost:
        """The app this screen runs in.

        Raises:
            TypeError: the app is not one that hosts these screens.
        """
        app = self.app
        if not isinstance(app, ScreenHost):
            raise TypeError(f"{type(self).__name__} needs an app with a session")
        return app

    @property
    def session(self) -> Session:
        """The backend and the run's settings."""
        return self.host.session

    @property
    def backend(self) -> Backend:
        """The blocking reads and actions (call them from thread workers only)."""
        return self.host.session.backend

    # -- what the screens tell the app -----------------------------------------------

    def report_connection(self, kind: str, ok: bool, reason: str = "") -> None:
        """Tell the app whether `kind` ("database" or "redis") answered (from any thread)."""
        self.post_message(ConnectionReport(kind, ok, reason))

    def report_error(self, exc: BaseException, assumed: str = "database") -> None:
        """A read failed: tell the app which connection `exc` says is lost (from any thread).

        Args:
            exc: what the read raised.
            assumed: the connection blamed when `exc` does not say.
        """
        self.report_connection(classify(exc) or assumed, False, str(exc))

    def request_action(self, action: str, rows: Iterable[Row]) -> None:
        """Ask the app to run a server action on `rows` (it confirms and refuses)."""
        self.post_message(ActionRequested(action, rows))

    # -- what the app tells the screens ----------------------------------------------

    @on(ConnectionChanged)
    def _show_connections(self, event: ConnectionChanged) -> None:
        self.query_one(ConnectionBanner).show_lost(event.connections.lost)

    # -- the interface the app uses ---------------------------------------------------

    def reload(self) -> None:
        """Read this screen's data again (ctrl+r, and after what changed it)."""

    def action_reload(self) -> None:
        self.reload()

    def palette_commands(self) -> list[PaletteCommand]:
        """This screen's entries for the command palette."""
        return []

    # -- the screens' own actions (not the server actions: the app runs those) ----------

    def ask_first(self, question: str, body: str, verb: str, run: Callable[[], object]) -> None:
        """Ask `question` (what happens: `body`); `y` calls `run`, else `verb` is cancelled.

        Refused in read-only mode (the key is not offered there; the palette leaves it out).
        """
        if self.session.readonly:
            self.notify("read-only mode: actions are disabled", severity="warning")
            return

        def confirmed(ok: bool | None) -> None:
            if ok:
                run()
            else:
                self.notify(f"{verb} cancelled")

        self.app.push_screen(ConfirmChoice(question, body), confirmed)

    def report_outcome(self, verb: str, act: Callable[[], str]) -> None:
        """Call `act` (in a thread worker): notify its message, or why it was refused; reload."""
        app = self.app
        severity: SeverityLevel = "information"
        try:
            message = act()
        except Exception as exc:
            message, severity = f"{verb} refused: {describe_error(exc)}", "error"
        app.call_from_thread(self.notify, message, title=verb, severity=severity, timeout=8)
        app.call_from_thread(self.reload)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Read-only: not offered at all (False, not None): footer and help leave it out.
        return not (action in self.WRITE_ACTIONS and self.session.readonly)

    def action_back(self) -> None:
        self.app.pop_screen()


class ServerActionsScreen(RachelScreen):
    """A screen whose r, i and D act on servers: `targets` says which."""

    WRITE_ACTIONS = SERVER_ACTIONS

    def targets(self) -> list[Row] | None:
        """The rows the actions apply to; None when the screen has none to offer yet."""
        return []

    def _act(self, action: str) -> None:
        rows = self.targets()
        if rows is None:
            self.notify("server not loaded yet", severity="warning")
            return
        self.request_action(action, rows)

    def action_retry(self) -> None:
        self._act("retry")

    def action_reinject(self) -> None:
        self._act("reinject")

    def action_deprovision(self) -> None:
        self._act("deprovision")


class LoadingScreen(RachelScreen, Generic[DataT]):
    """A screen that reads its data in a thread worker, then shows it on the UI thread.

    It reads when it opens, then every `RELOAD_SECONDS` if set, and when asked.
    """

    #: The connection blamed when a load fails without saying which.
    LOAD_NEEDS: ClassVar[str] = "database"
    #: Seconds between reads while the screen is open (None: at open and when asked only).
    RELOAD_SECONDS: ClassVar[float | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0  # completed loads (tests wait on it)

    def on_mount(self) -> None:
        # Textual runs this after a subclass's on_mount: its tables have their columns.
        if self.RELOAD_SECONDS is not None:
            self.set_interval(self.RELOAD_SECONDS, self.reload)
        self.reload()

    def load(self) -> DataT:
        """Read the data (in a worker thread: blocking is fine, widgets are not)."""
        raise NotImplementedError

    def show(self, data: DataT) -> None:
        """Show what `load` read (on the UI thread)."""
        raise NotImplementedError

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def _load(self) -> None:
        try:
            data = self.load()
        except Exception as exc:
            self.report_error(exc, self.LOAD_NEEDS)
            return
        self.app.call_from_thread(self._loaded, data)

    def _loaded(self, data: DataT) -> None:
        self.loads += 1
        self.show(data)
