"""A lost Redis or database shows a banner, and the TUI recovers by itself."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import peewee
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cli.embedded_redis import EmbeddedRedis
from cli.tui import operations
from core.domain.events import redis_publisher
from core.domain.lifecycle import transition
from core.platform.clock import ManualClock
from core.platform.settings import Settings
from tests.tui.conftest import OPERATOR, SIZE, loaded, wait_for
from tui.app import RachelApp
from tui.backend import Backend
from tui.widgets import ConnectionBanner, FleetTable

pytestmark = pytest.mark.anyio


def banner(app: RachelApp) -> ConnectionBanner:
    return app.screen.query_one(ConnectionBanner)


def banner_shown(app: RachelApp) -> bool:
    b = banner(app)
    return b.has_class("lost") and b.display


async def test_redis_lost_and_back(
    fleet, tmp_path: Path, tui_settings: Settings, clock: ManualClock
) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url = server.ensure_running()
    client = redis.Redis.from_url(url, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    backend = Backend(client, operations(client, tui_settings), 120, OPERATOR, clock)
    app = RachelApp(backend, refresh_seconds=3600, summary_seconds=0.3)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await loaded(pilot)
            assert not banner_shown(app)
            await asyncio.to_thread(server.stop)
            await wait_for(pilot, lambda: banner_shown(app))
            assert "redis unreachable" in str(banner(app).render())
            assert not app.live_connected
            await pilot.press("j")  # every screen shows it
            await wait_for(pilot, lambda: banner_shown(app))
            await pilot.press("escape")

            await asyncio.to_thread(server.ensure_running)
            await wait_for(pilot, lambda: app.live_connected and not banner_shown(app), 15)
            # Live updates flow again over the new connection.
            transition(
                fleet["creating"].id,
                "creating",
                "cloud_init",
                message="booted",
                clock=clock,
                publish=redis_publisher(client),
            )
            t = app.fleet.query_one(FleetTable)
            await wait_for(pilot, lambda: str(t.get_cell("3", "status")) == "cloud_init")
    finally:
        client.close()
        server.stop()


async def test_database_lost_and_back(fleet, make_app, tui_db: peewee.Database) -> None:
    app = make_app(refresh_seconds=0.3)
    path = Path(tui_db.database)
    aside = path.with_name("aside.db")
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        tui_db.close()  # checkpoints the WAL into the file
        os.replace(path, aside)
        try:
            await wait_for(pilot, lambda: banner_shown(app))
            assert "database unreachable" in str(banner(app).render())
            assert app.fleet.query_one(FleetTable).row_count == 9  # last known rows stay
        finally:
            for extra in (
                path,
                path.with_name(path.name + "-wal"),
                path.with_name(path.name + "-shm"),
            ):
                extra.unlink(missing_ok=True)
            os.replace(aside, path)
        await wait_for(pilot, lambda: not banner_shown(app))
        refreshes = app.fleet.refreshes
        await wait_for(pilot, lambda: app.fleet.refreshes > refreshes)
