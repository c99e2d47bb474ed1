"""One server: its health, phase timeline, event log, last error, jobs, and the actions."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Label, Static

from core.domain.releases import short
from core.security.redaction import redact
from tui.backend import EventLine, ServerDetail
from tui.cells import (
    HEALTH_STYLE,
    KIND_STYLE,
    STATUS_STYLE,
    Row,
    duration,
    health_of,
    timestamp,
    total_cell,
)
from tui.messages import ServersChanged
from tui.screens.base import LoadingScreen, PaletteCommand, ServerActionsScreen
from tui.summary import health_timeline_text, phase_spans, timeline_text
from tui.widgets import add_columns


class ServerScreen(ServerActionsScreen, LoadingScreen[ServerDetail | None]):
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

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="server-body"):
            yield Static(f"server {self.server_id}: loading…", id="server-head")
            yield Label("Health", classes="section")
            yield Static("", id="server-health")
            yield Label("Phase timeline", classes="section")
            yield Static("", id="server-timeline")
            yield Label("Last error", classes="section")
            yield Static("", id="server-error")
            yield Label("Jobs", classes="section")
            yield DataTable(id="server-jobs", cursor_type="row", zebra_stripes=True)
            yield Label("Events", classes="section")
            yield DataTable(id="server-events", cursor_type="row", zebra_stripes=True)
            # The table cuts long messages; the selected event is shown here whole.
            yield Static("", id="server-event")

    def on_mount(self) -> None:
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

    def load(self) -> ServerDetail | None:
        return self.backend.load_server(self.server_id)

    @on(ServersChanged)
    def _servers_changed(self, event: ServersChanged) -> None:
        if self.server_id in event.ids:
            self.reload()

    def show(self, detail: ServerDetail | None) -> None:
        self.detail = detail
        head = self.query_one("#server-head", Static)
        if detail is None:
            head.update(f"server {self.server_id} does not exist")
            return
        s = detail.row.server
        now = self.backend.now()
        text = Text()
        text.append(f"{s.name or '(unnamed)'}  ", style="bold")
        text.append(f"id {s.id}  customer {s.customer}  ")
        text.append(s.status, style=STATUS_STYLE.get(s.status, ""))
        text.append(f"  in phase {duration((now - s.status_changed_at).total_seconds())}  ")
        total = total_cell(s, now, self.backend.sla_seconds)
        text.append("total ")
        text.append(total.text, style=total.style)
        text.append(
            f"\n{s.ipv4 or 'no address'}  {s.location}  {s.server_type}  "
            f"attempt {s.attempt}  hetzner #{s.provider_id or '-'}  job {s.job_id or '-'}"
        )
        text.append("\nRachel8 ")
        if detail.rachel8_commit:
            text.append(short(detail.rachel8_commit), style="bold")
        else:
            text.append("(no commit recorded yet)", style="dim")
        if detail.update_claim is not None:
            text.append(
                f"  being updated by a rollout (target {detail.update_claim})", style="cyan"
            )
        head.update(text)
        self.query_one("#server-health", Static).update(self._health_text(detail))
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
        self._show_event(0)
        for e in reversed(detail.events):
            events.add_row(
                timestamp(e.at),
                Text(e.kind, style=KIND_STYLE.get(e.kind, "")),
                e.actor,
                _state(e),
                e.message,
            )

    def _health_text(self, detail: ServerDetail) -> Text:
        """The health, since when and why; the last heartbeat; the health timeline."""
        s = detail.row.server
        now = self.backend.now()
        health = health_of(s)
        text = Text()
        if health is None:
            text.append(f"not watched ({s.status}): health is decided for ready servers", "dim")
        else:
            text.append(health, style=HEALTH_STYLE.get(health, ""))
            changed = detail.health_changed_at
            if changed is not None:
                text.append(f" since {timestamp(changed)} ")
                text.append(f"({duration((now - changed).total_seconds())})", style="dim")
            if s.health_reason:
                text.append(f": {redact(s.health_reason)}")
        beat = detail.heartbeat
        text.append("\nlast heartbeat ")
        if not beat.known:
            text.append("unknown (Redis unreachable)", style="yellow")
        elif beat.at is None:
            text.append("none yet", style="dim")
        else:
            text.append(f"{duration((now - beat.at).total_seconds())} ago ")
            text.append(f"({timestamp(beat.at)})", style="dim")
        text.append("\n")
        text.append_text(health_timeline_text(phase_spans(detail.events, now, kind="health")))
        return text

    @on(DataTable.RowHighlighted, "#server-events")
    def _event_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_event(event.cursor_row)

    def _show_event(self, index: int) -> None:
        """Show the `index`th event of the table (newest first) in full below it."""
        events = [] if self.detail is None else self.detail.events
        field = self.query_one("#server-event", Static)
        if not 0 <= index < len(events):
            field.update("")
            return
        e = events[len(events) - 1 - index]
        text = Text(f"{timestamp(e.at)}  {e.kind}  {e.actor}\n", style="dim")
        text.append(e.message)
        field.update(text)

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
                timestamp(job.enqueued_at),
                timestamp(job.ended_at),
            )
        if not detail.jobs:
            jobs.add_row("(none in Redis)", "", "", "", "")

    def targets(self) -> list[Row] | None:
        """This server, once loaded."""
        return None if self.detail is None else [self.detail.row]

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Retry this server", "r", self.action_retry, True),
            PaletteCommand("Re-inject secrets", "i", self.action_reinject, True),
            PaletteCommand(
                "Force deprovision this server", "D, asks first", self.action_deprovision, True
            ),
            PaletteCommand("Reload", "ctrl+r", self.action_reload, False),
            PaletteCommand("Back to the fleet", "escape", self.action_back, False),
        ]


def _state(event: EventLine) -> Text:
    """An event's new state: a health state for health events, else a status."""
    state = event.to_status or ""
    styles = HEALTH_STYLE if event.kind == "health" else STATUS_STYLE
    return Text(state, style=styles.get(state, ""))
