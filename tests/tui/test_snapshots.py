"""Snapshots (pytest-textual-snapshot) of the fleet, server, jobs, rollouts screens, seeded data.

Deterministic: a fixed clock, fixed rows and times, a fixed terminal size, and
timers that do not fire while the screenshot is taken. Update with
`uv run pytest tests/tui/test_snapshots.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

import redis

from jobs.queues import START, enqueue_step
from jobs.registry import JobFunction
from tests.tui.conftest import SIZE, heard, loaded, open_screen, wait_for
from tests.tui.test_rollouts import open_rollouts, seed_rollout
from tui.screens.jobs import JobsScreen
from tui.screens.server import ServerScreen
from tui.widgets import FleetTable


def test_fleet_screen(fleet, make_app, snap_compare) -> None:
    async def ready(pilot) -> None:
        await loaded(pilot)
        await wait_for(pilot, lambda: pilot.app.fleet.summary is not None)
        await pilot.press("down", "space", "down")  # one marked row, cursor below it
        await pilot.pause()

    assert snap_compare(make_app(summary_seconds=3600), terminal_size=SIZE, run_before=ready)


def _server_screen(server_id: int):
    """A `run_before` that opens server `server_id`'s screen and waits for its data."""

    async def ready(pilot) -> None:
        await loaded(pilot)
        table = pilot.app.fleet.query_one(FleetTable)
        table.move_cursor(row=table.get_row_index(str(server_id)))
        await pilot.press("enter")
        screen = pilot.app.screen
        assert isinstance(screen, ServerScreen)
        await wait_for(pilot, lambda: screen.loads >= 1)
        await pilot.pause()

    return ready


def test_server_screen(fleet, make_app, snap_compare) -> None:
    ready = _server_screen(fleet["failed_inject"].id)
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=ready)


def test_jobs_screen(fleet, make_app, snap_compare, redis_client: redis.Redis) -> None:
    enqueue_step(redis_client, START, JobFunction.CREATE_SERVER, 3, "creating", record=False)

    async def ready(pilot) -> None:
        await open_screen(pilot, "j", JobsScreen)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=ready)


def test_unhealthy_server_screen(fleet, make_app, snap_compare, redis_client: redis.Redis) -> None:
    heard(redis_client, fleet["slow"], 95)
    ready = _server_screen(fleet["slow"].id)
    assert snap_compare(make_app(), terminal_size=SIZE, run_before=ready)


def test_rollouts_screen(fleet, make_app, snap_compare, clock) -> None:
    seed_rollout(clock)

    async def ready(pilot) -> None:
        await open_rollouts(pilot)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=ready)
