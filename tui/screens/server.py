"""One server: its phase timeline, event log, last error, jobs, and the actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Label, Static

from tui.backend import ServerDetail, classify
from tui.cells import STATUS_STYLE, duration, total_cell
from tui.summary import phase_spans, timeline_text
from tui.widgets import ConnectionBanner, add_columns

if TYPE_CHECKING:
    from tui.app import RachelApp


def _time(value: object) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if hasattr(value, "strftime") else "-"


class ServerScreen(Screen[None]):
    """Details of server `server_id`, reloaded on its live events."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("r", "retry", "Retry"),
        Binding("i", "reinject", "Re-inject"),
        Binding("D", "deprovision", "Deprovision", key_display="shift+d"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    def __init__(self, server_id: int) -> None:
        super().__init__()
        self.server_id = server_id
        self.detail: ServerDetail | None = None
        self.loads = 0  # completed loads (tests wait on it)

    @property
    def rc(self) -> RachelApp:
        return cast("RachelApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield ConnectionBanner(id="banner")
        with VerticalScroll(id="server-body"):
            yield Static(f"server {self.server_id}: loading…", id="server-head")
            yield Label("Phase timeline", classes="section")
            yield Static("", id="server-timeline")
            yield Label("Last error", classes="section")
            yield Static("", id="server-error")
            yield Label("Jobs", classes="section")
            yield DataTable(id="server-jobs", cursor_type="row", zebra_stripes=True)
            yield Label("Events", classes="section")
            yield DataTable(id="server-events", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ConnectionBanner).show_lost(self.rc.lost)
        add_columns(
            self.query_one("#server-jobs", DataTable),
            ("JOB", 44),
            ("QUEUE", 15),
            ("STATUS", 10),
            ("ENQUEUED", 20),
            ("ENDED", 20),
        )
        add_columns(
            self.query_one("#server-events", DataTable),
            ("AT", 20),
            ("KIND", 12),
            ("ACTOR", 22),
            ("STATUS", 18),
            ("MESSAGE", 80),
        )
        self.reload()

    def reload(self) -> None:
        """Load the server again (live events and actions call this)."""
        self._load()

    def action_reload(self) -> None:
        self.reload()

    @work(thread=True, exclusive=True, group="server", exit_on_error=False)
    def _load(self) -> None:
        app = self.rc
        try:
            detail = app.backend.load_server(self.server_id)
        except Exception as exc:
            app.call_from_thread(app.set_connection, classify(exc) or "database", False, str(exc))
            return
        app.call_from_thread(self._show, detail)

    def _show(self, detail: ServerDetail | None) -> None:
        self.loads += 1
        self.detail = detail
        head = self.query_one("#server-head", Static)
        if detail is None:
            head.update(f"server {self.server_id} does not exist")
            return
        app = self.rc
        s = detail.row.server
        now = app.backend.now()
        text = Text()
        text.append(f"{s.name or '(unnamed)'}  ", style="bold")
        text.append(f"id {s.id}  customer {s.customer}  ")
        text.append(s.status, style=STATUS_STYLE.get(s.status, ""))
        text.append(f"  in phase {duration((now - s.status_changed_at).total_seconds())}  ")
        total = total_cell(s, now, app.backend.sla_seconds)
        text.append("total ")
        text.append(total.text, style=total.style)
        text.append(
            f"\n{s.ipv4 or 'no address'}  {s.location}  {s.server_type}  "
            f"attempt {s.attempt}  hetzner #{s.provider_id or '-'}  job {s.job_id or '-'}"
        )
        head.update(text)
        spans = phase_spans(detail.events, now)
        self.query_one("#server-timeline", Static).update(timeline_text(spans, s.created_at))
        error = detail.last_error
        if error:
            where = f"(in {detail.failed_phase}) " if detail.failed_phase else ""
            self.query_one("#server-error", Static).update(Text(where + error, style="red"))
        else:
            self.query_one("#server-error", Static).update(Text("none", style="dim"))
        self._fill_jobs(detail)
        events = self.query_one("#server-events", DataTable)
        events.clear()
        for e in reversed(detail.events):
            events.add_row(
                _time(e.at),
                e.kind,
                e.actor,
                Text(e.to_status or "", style=STATUS_STYLE.get(e.to_status or "", "")),
                e.message,
            )

    def _fill_jobs(self, detail: ServerDetail) -> None:
        jobs = self.query_one("#server-jobs", DataTable)
        jobs.clear()
        if detail.jobs is None:
            jobs.add_row("(Redis unreachable)", "", "", "", "")
            return
        for job in detail.jobs:
            style = "red" if job.status == "failed" else "green" if job.status == "finished" else ""
            jobs.add_row(
                job.id,
                job.queue,
                Text(job.status, style=style),
                _time(job.enqueued_at),
                _time(job.ended_at),
            )
        if not detail.jobs:
            jobs.add_row("(none in Redis)", "", "", "", "")

    def _act(self, action: str) -> None:
        if self.detail is None:
            self.notify("server not loaded yet", severity="warning")
            return
        self.rc.request_action(action, [self.detail.row])

    def action_retry(self) -> None:
        self._act("retry")

    def action_reinject(self) -> None:
        self._act("reinject")

    def action_deprovision(self) -> None:
        self._act("deprovision")

    def action_back(self) -> None:
        self.app.pop_screen()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("retry", "reinject", "deprovision") and self.rc.readonly:
            return None
        return True

    def palette_commands(self) -> list[tuple[str, str, Callable[[], Any], bool]]:
        """This screen's actions for the command palette."""
        return [
            ("Retry this server", "r", self.action_retry, True),
            ("Re-inject secrets", "i", self.action_reinject, True),
            ("Force deprovision this server", "D, asks first", self.action_deprovision, True),
            ("Reload", "ctrl+r", self.action_reload, False),
            ("Back to the fleet", "escape", self.action_back, False),
        ]
