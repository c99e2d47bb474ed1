"""Server, jobs and help screens in a running app."""

from __future__ import annotations

import io

import pytest
import redis
from rich.console import Console
from rq import Queue, SimpleWorker

from core.domain.events import redis_publisher
from core.domain.lifecycle import transition
from core.platform.clock import ManualClock
from core.store.models import Server
from jobs.queues import START
from tests.tui.conftest import SIZE, loaded, open_screen, wait_for
from tests.tui.test_queries import PLANTED
from tui.app import RachelApp
from tui.screens.help import HelpScreen, key_table
from tui.screens.jobs import JobsScreen
from tui.screens.server import ServerScreen
from tui.widgets import FleetTable

pytestmark = pytest.mark.anyio


def text(app: RachelApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def help_text(screen: object) -> str:
    assert isinstance(screen, HelpScreen)
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(key_table(screen.under))
    return console.export_text()


async def open_server(pilot, app: RachelApp, server: Server) -> ServerScreen:
    t = app.fleet.query_one(FleetTable)
    t.move_cursor(row=t.get_row_index(str(server.id)))
    await pilot.press("enter")
    screen = app.screen
    assert isinstance(screen, ServerScreen)
    await wait_for(pilot, lambda: screen.loads >= 1)
    return screen


async def open_jobs(pilot, app: RachelApp) -> JobsScreen:
    """Open the jobs screen from the fleet and wait for its first load."""
    return await open_screen(pilot, "j", JobsScreen)


async def test_server_screen_timeline_error_jobs_and_live_reload(
    fleet, make_app, redis_client: redis.Redis, clock: ManualClock
) -> None:
    failed = fleet["failed"]
    Server.update(last_error=f"create failed: token {PLANTED}").where(
        Server.id == failed.id
    ).execute()
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        screen = await open_server(pilot, app, failed)
        assert "pending 10s  >  creating 1m30s  >  failed 8m20s…" in text(app, "#server-timeline")
        error = text(app, "#server-error")
        assert "(in creating) create failed: token" in error
        assert PLANTED not in error  # never a secret
        events = screen.query_one("#server-events")
        assert events.row_count == 2

        await pilot.press("r", "y")  # retry from this screen: a job appears in its jobs table
        jobs = screen.query_one("#server-jobs")
        await wait_for(pilot, lambda: str(jobs.get_row_at(0)[0]).startswith("srv6-creating-a1"))
        assert str(jobs.get_row_at(0)[1]) == START

        loads = screen.loads
        transition(
            failed.id,
            "creating",
            "cloud_init",
            message="booting",
            clock=clock,
            publish=redis_publisher(redis_client),
        )
        await wait_for(
            pilot, lambda: screen.loads > loads and "cloud_init" in text(app, "#server-head")
        )
        await pilot.press("escape")
        assert app.screen is app.fleet


async def test_jobs_screen_failed_job_traceback_and_requeue(
    fleet, make_app, redis_client: redis.Redis
) -> None:
    start = Queue(START, connection=redis_client)
    start.enqueue(
        "tests.tui.test_queries.boom",
        6,
        job_id="srv6-creating-a0-r0",
        meta={"server_id": 6, "step": "creating"},
    )
    SimpleWorker([start], connection=redis_client).work(burst=True, logging_level="ERROR")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_jobs(pilot, app)
        assert screen.query_one("#jobs-failed").row_count == 1
        tb = text(app, "#jobs-traceback")
        assert "RuntimeError: server 6 exploded" in tb and PLANTED not in tb
        queues = screen.query_one("#jobs-queues")
        assert [str(c) for c in queues.get_row_at(2)] == [START, "0", "0", "0", "1"]
        await pilot.press("R")
        await wait_for(pilot, lambda: start.job_ids == ["srv6-creating-a0-r0"])
        await wait_for(pilot, lambda: screen.query_one("#jobs-failed").row_count == 0)
        assert any("requeued on rc-start" in str(n.message) for n in app._notifications)


async def test_help_lists_the_keys_of_the_current_screen(fleet, make_app) -> None:
    app = make_app(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = help_text(app.screen)
        assert "Filter" in keys and "show status:failed" in keys
        assert "Deprovision" not in keys  # read-only: not offered at all
        await pilot.press("question_mark")
        assert app.screen is app.fleet
        await pilot.press("j")
        await pilot.press("question_mark")
        keys = help_text(app.screen)
        assert "Back" in keys and "Filter" not in keys
        assert "Requeue" not in keys  # read-only: not offered at all
