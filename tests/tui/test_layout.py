"""The summary, footer, rows and event log as an operator reads them (issue 21, items 8-9)."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from core.store.models import Event
from tests.tui.conftest import NOW, SIZE, burst, loaded, wait_for
from tui.screens.server import ServerScreen
from tui.widgets import FleetTable

pytestmark = pytest.mark.anyio


def lines(widget: Static) -> list[str]:
    """What `widget` shows on screen, line by line."""
    return [strip.text for strip in widget.render_lines(widget.region.reset_offset)]


async def test_summary_counts_move_with_the_rows(fleet, make_app) -> None:
    app = make_app()  # the summary's own reads are an hour apart
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await wait_for(pilot, lambda: app.fleet.summary is not None)
        creating = fleet["creating"]
        creating.status = "cloud_init"
        creating.save()
        app.fleet.rows_changed([creating.id])
        await wait_for(pilot, lambda: app.fleet.live_batches >= 1)
        first = lines(app.fleet.query_one("#summary", Static))[0]
        assert "cloud_init 2" in first and "creating" not in first.replace("cloud_init", "")


async def test_no_workers_is_a_warning(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await wait_for(pilot, lambda: app.fleet.summary is not None)
        assert app.fleet.summary is not None and app.fleet.summary.workers == 0
        await pilot.pause()
        assert "⚠ workers 0" in "\n".join(lines(app.fleet.query_one("#summary", Static)))


async def test_80x24_keeps_the_essential_keys_and_figures(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        await wait_for(pilot, lambda: app.fleet.summary is not None)
        await pilot.pause()
        visible = [
            str(key.render()).split()[0]
            for key in app.screen.query("FooterKey")
            if key.region.right <= 80 - 12  # left of the command palette's key
        ]
        assert {"j", "?", "q"} <= set(visible)
        shown = "\n".join(lines(app.fleet.query_one("#summary", Static)))
        assert "workers" in shown and "hetzner" in shown


async def test_failed_row_says_why_not_the_cleanup(fleet, make_app) -> None:
    failed = fleet["failed"]
    Event.create(server=failed, at=NOW, kind="cleanup", message="deleted VPS 77", actor="system")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        cell = str(app.fleet.query_one(FleetTable).get_cell(str(failed.id), "last_event"))
        assert "server limit exceeded" in cell and "deleted VPS" not in cell


async def test_long_event_message_can_be_read_whole(fleet, make_app) -> None:
    server = fleet["ready"]
    message = "install step failed: " + " ".join(f"word{i}" for i in range(60)) + " THE END"
    Event.create(server=server, at=NOW, kind="note", message=message, actor="system")
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await burst(pilot, "home")
        table = app.fleet.query_one(FleetTable)
        table.move_cursor(row=table.get_row_index(str(server.id)))
        await burst(pilot, "enter")
        screen = app.screen
        assert isinstance(screen, ServerScreen)
        await wait_for(pilot, lambda: screen.loads >= 1)
        await pilot.pause()
        shown = " ".join(lines(screen.query_one("#server-event", Static)))
        assert " ".join(shown.split()).endswith(message)


async def test_home_and_end_go_to_the_first_and_last_server(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        table = app.fleet.query_one(FleetTable)
        await burst(pilot, "end")
        assert table.cursor_row == table.row_count - 1
        await burst(pilot, "home")
        assert table.cursor_row == 0


async def test_ctrl_c_quits(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await burst(pilot, "/", "ctrl+c")
        await pilot.pause()
        assert app.return_code == 0
