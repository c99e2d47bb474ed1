"""The job queues: depths, workers, failed jobs with their tracebacks, requeue."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Label, Static

from tui.backend import JobView, QueueView, WorkerView, describe_error
from tui.cells import timestamp
from tui.screens.base import LoadingScreen, PaletteCommand
from tui.widgets import add_columns

REFRESH_SECONDS = 3.0


@dataclass(frozen=True)
class JobsData:
    """One read of the queues."""

    queues: Sequence[QueueView]
    workers: Sequence[WorkerView]
    failed: Sequence[JobView]


class JobsScreen(LoadingScreen[JobsData]):
    """Queues and workers at the top, failed jobs and the selected traceback below."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("R", "requeue", "Requeue", key_display="shift+r"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    WRITE_ACTIONS = frozenset({"requeue"})
    LOAD_NEEDS = "redis"

    def __init__(self) -> None:
        super().__init__()
        self.data: JobsData | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="jobs-top"):
            with Vertical():
                yield Label("Queues", classes="section")
                yield DataTable(id="jobs-queues", cursor_type="none")
            with Vertical():
                yield Label("Workers", classes="section")
                yield DataTable(id="jobs-workers", cursor_type="none")
        yield Label("Failed jobs", classes="section")
        yield DataTable(id="jobs-failed", cursor_type="row", zebra_stripes=True)
        yield Static("", id="jobs-traceback")

    def on_mount(self) -> None:
        # Fixed widths: the layout does not jump as values change (and snapshots are stable).
        add_columns(
            self.query_one("#jobs-queues", DataTable),
            ("QUEUE", 16),
            ("QUEUED", 7),
            ("RUNNING", 8),
            ("SCHEDULED", 10),
            ("FAILED", 7),
        )
        add_columns(
            self.query_one("#jobs-workers", DataTable), ("WORKER", 28), ("STATE", 10), ("JOB", 36)
        )
        failed = self.query_one("#jobs-failed", DataTable)
        add_columns(failed, ("JOB", 44), ("QUEUE", 15), ("SERVER", 7), ("STEP", 18), ("ENDED", 20))
        failed.focus()
        self.set_interval(REFRESH_SECONDS, self.reload)
        self.reload()

    def load(self) -> JobsData:
        ops = self.backend.operations
        return JobsData(ops.queues(), ops.workers(), ops.failed_jobs())

    def show(self, data: JobsData) -> None:
        self.report_connection("redis", True)
        self.data = data
        queues = self.query_one("#jobs-queues", DataTable)
        queues.clear()
        for q in data.queues:
            queues.add_row(
                q.name,
                str(q.queued),
                str(q.started),
                str(q.scheduled),
                Text(str(q.failed), style="red" if q.failed else ""),
            )
        workers = self.query_one("#jobs-workers", DataTable)
        workers.clear()
        for w in data.workers:
            workers.add_row(w.name, w.state, w.current_job or "-")
        if not data.workers:
            workers.add_row(Text("no live worker", style="bold red"), "", "")
        failed = self.query_one("#jobs-failed", DataTable)
        selected = self._selected_id()
        failed.clear()
        for job in data.failed:
            failed.add_row(
                job.id,
                job.queue,
                str(job.server_id or "-"),
                job.step or "-",
                timestamp(job.ended_at),
                key=job.id,
            )
        if selected is not None and selected in failed.rows:
            failed.move_cursor(row=failed.get_row_index(selected))
        self._show_traceback()

    def _selected_id(self) -> str | None:
        failed = self.query_one("#jobs-failed", DataTable)
        if not failed.row_count:
            return None
        row_key, _ = failed.coordinate_to_cell_key(failed.cursor_coordinate)
        return row_key.value

    @on(DataTable.RowHighlighted, "#jobs-failed")
    def _highlighted(self) -> None:
        self._show_traceback()

    def _show_traceback(self) -> None:
        jid = self._selected_id()
        job = next((j for j in (self.data.failed if self.data else []) if j.id == jid), None)
        panel = self.query_one("#jobs-traceback", Static)
        if job is None:
            panel.update(Text("no failed job", style="dim"))
        else:
            panel.update(Text(job.traceback or "(no traceback recorded)", style="red"))

    def action_requeue(self) -> None:
        if self.session.readonly:
            self.notify("read-only mode: actions are disabled", severity="warning")
            return
        jid = self._selected_id()
        if jid is None:
            self.notify("no failed job selected", severity="warning")
            return
        self._requeue(jid)

    @work(thread=True, group="requeue", exit_on_error=False)
    def _requeue(self, jid: str) -> None:
        app = self.app
        try:
            job = self.backend.operations.requeue(jid)
            message, severity = f"job {job.id} requeued on {job.queue}", "information"
        except Exception as exc:
            message, severity = f"requeue refused: {describe_error(exc)}", "error"
        app.call_from_thread(self.notify, message, title="requeue", severity=severity)
        app.call_from_thread(self.reload)

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand(
                "Requeue failed job", "shift+r: the selected one", self.action_requeue, True
            ),
            PaletteCommand("Reload queues", "ctrl+r", self.action_reload, False),
            PaletteCommand("Back to the fleet", "escape", self.action_back, False),
        ]
