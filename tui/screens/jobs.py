"""The job queues, as rq-dashboard shows them: depths, cron tasks, workers, jobs, requeue.

Queues and the cron tasks' last and next runs at the top, the workers with
their heartbeat and job counts, the started and recently finished jobs, and
the failed jobs with the selected one's traceback.
"""

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

from core.platform.settings_parsing import format_duration
from tui.backend import CronView, JobView, QueueView, WorkerView, describe_error
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
    started: Sequence[JobView]
    finished: Sequence[JobView]
    cron: Sequence[CronView]


def next_run_cell(task: CronView) -> Text:
    """A cron task's next run: its time, "due" once that is past, "never run" before the first."""
    if task.last_run is None:
        return Text("never run", style="yellow")
    if task.due:
        return Text("due", style="yellow")
    return Text(timestamp(task.next_run))


class JobsScreen(LoadingScreen[JobsData]):
    """Queues and cron tasks, workers, started and finished jobs, failed jobs and a traceback."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("R", "requeue", "Requeue", key_display="shift+r"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    WRITE_ACTIONS = frozenset({"requeue"})
    LOAD_NEEDS = "redis"
    RELOAD_SECONDS = REFRESH_SECONDS

    def __init__(self) -> None:
        super().__init__()
        self.data: JobsData | None = None

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="jobs-top"):
            with Vertical(id="jobs-queues-box"):
                yield Label("Queues", classes="section")
                yield DataTable(id="jobs-queues", cursor_type="none")
            with Vertical():
                yield Label("Cron tasks", classes="section")
                yield DataTable(id="jobs-cron", cursor_type="none")
        yield Label("Workers", classes="section")
        yield DataTable(id="jobs-workers", cursor_type="none")
        yield Label("Started and finished jobs (newest first)", classes="section")
        yield DataTable(id="jobs-recent", cursor_type="none", zebra_stripes=True)
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
            self.query_one("#jobs-cron", DataTable),
            ("TASK", 13),
            ("EVERY", 7),
            ("LAST RUN", 19),
            ("NEXT RUN", 19),
            ("RESULT", 30),
        )
        add_columns(
            self.query_one("#jobs-workers", DataTable),
            ("WORKER", 28),
            ("STATE", 9),
            ("HEARTBEAT", 19),
            ("OK", 6),
            ("FAILED", 6),
            ("WORKING", 9),
            ("JOB", 36),
        )
        add_columns(
            self.query_one("#jobs-recent", DataTable),
            ("JOB", 30),
            ("QUEUE", 13),
            ("STEP", 14),
            ("WORKER", 18),
            ("STARTED", 19),
            ("ENDED", 19),
            ("STATUS", 8),
            ("RESULT", 20),
        )
        failed = self.query_one("#jobs-failed", DataTable)
        add_columns(failed, ("JOB", 44), ("QUEUE", 15), ("SERVER", 7), ("STEP", 18), ("ENDED", 20))
        failed.focus()

    def load(self) -> JobsData:
        ops = self.backend.operations
        return JobsData(
            ops.queues(),
            ops.workers(),
            ops.failed_jobs(),
            ops.started_jobs(),
            ops.finished_jobs(),
            ops.cron_tasks(self.backend.now()),
        )

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
        self._show_cron(data.cron)
        self._show_workers(data.workers)
        self._show_recent(data.started, data.finished)
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

    def _show_cron(self, cron: Sequence[CronView]) -> None:
        table = self.query_one("#jobs-cron", DataTable)
        table.clear()
        for task in cron:
            table.add_row(
                task.task,
                format_duration(task.interval),
                timestamp(task.last_run),
                next_run_cell(task),
                Text(task.result or "-", style="red" if task.errors else ""),
            )

    def _show_workers(self, workers: Sequence[WorkerView]) -> None:
        table = self.query_one("#jobs-workers", DataTable)
        table.clear()
        for w in workers:
            table.add_row(
                w.name,
                w.state,
                timestamp(w.last_heartbeat),
                str(w.successful),
                Text(str(w.failed), style="red" if w.failed else ""),
                format_duration(round(w.working_seconds, 1)),
                w.current_job or "-",
            )
        if not workers:
            table.add_row(Text("no live worker", style="bold red"), *[""] * 6)

    def _show_recent(self, started: Sequence[JobView], finished: Sequence[JobView]) -> None:
        table = self.query_one("#jobs-recent", DataTable)
        table.clear()
        for job, status in [(j, "running") for j in started] + [(j, "finished") for j in finished]:
            table.add_row(
                job.id,
                job.queue,
                job.step or "-",
                job.worker or "-",
                timestamp(job.started_at),
                timestamp(job.ended_at),
                Text(status, style="cyan" if status == "running" else "green"),
                job.result or "-",
            )
        if not table.row_count:
            table.add_row(Text("no started or finished job", style="dim"), *[""] * 7)

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
