"""Fleet health in the running TUI: the column, the filter, the counts, live health changes,
and the server screen's health section (state, reason, last heartbeat, timeline)."""

from __future__ import annotations

import pytest
import redis
from rich.text import Text

from core.domain.events import publish
from core.store.models import Event, Server
from tests.tui.conftest import DOWN_REASON, SIZE, heard, loaded, wait_for
from tests.tui.test_fleet import cell, ids
from tests.tui.test_screens import open_server, text
from tui.app import RachelApp

pytestmark = pytest.mark.anyio


def summary(app: RachelApp) -> str:
    return str(app.fleet.query_one("#summary").render())


async def test_health_column_filter_and_counts(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert [cell(app, i, "health") for i in (1, 2, 4)] == ["healthy", "unhealthy", "-"]
        assert cell(app, 2, "last_event") == f"unhealthy: {DOWN_REASON}"
        assert "health  healthy 1  degraded 0  unhealthy 1  unknown 0" in summary(app)
        await pilot.press("6")  # unhealthy
        assert ids(app) == [2]
        await pilot.press("7")  # degraded or unhealthy, replacing it
        assert ids(app) == [2]
        await pilot.press("2")  # ready, combined with the health term
        assert ids(app) == [2]
        await pilot.press("0")
        assert len(ids(app)) == 9
        await pilot.press("slash", *"health:healthy", "enter")
        assert ids(app) == [1]
        await pilot.press("escape")
        app.fleet.sort_by("health")
        await pilot.pause()
        assert ids(app)[:2] == [2, 1]  # the worst first


async def test_a_health_change_arrives_live(fleet, make_app, redis_client: redis.Redis) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        ready = fleet["ready"]
        # What the health task does: the row, its Event, then the message on the channel.
        Server.update(health="degraded", health_reason="disk 95% full").where(
            Server.id == ready.id
        ).execute()
        Event.create(
            server=ready, kind="health", message="disk 95% full", actor="cron",
            from_status="healthy", to_status="degraded",
        )  # fmt: skip
        message = {
            "type": "health",
            "server_id": ready.id,
            "health": "degraded",
            "reason": "disk 95% full",
        }
        publish(redis_client, message)
        await wait_for(pilot, lambda: cell(app, ready.id, "health") == "degraded")
        assert "degraded 1  unhealthy 1" in summary(app)


async def test_server_screen_shows_health_heartbeat_and_health_timeline(
    fleet, make_app, redis_client: redis.Redis
) -> None:
    down = fleet["slow"]
    heard(redis_client, down, 95)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        screen = await open_server(pilot, app, down)
        health = text(app, "#server-health")
        assert f"unhealthy since 2026-01-01 11:58:30 (1m30s): {DOWN_REASON}" in health
        assert "last heartbeat 1m35s ago (2026-01-01 11:58:25)" in health
        assert "healthy 6m40s  >  degraded 1m00s  >  healthy 2m30s  >  unhealthy 1m30s…" in health
        events = screen.query_one("#server-events")
        kinds = [events.get_row_at(i)[1] for i in range(3)]
        assert [k.plain for k in kinds] == ["probe", "repair", "health"]
        assert len({k.style for k in kinds}) == 3  # each kind stands out
        state = events.get_row_at(2)[3]
        assert isinstance(state, Text) and (state.plain, state.style) == ("unhealthy", "bold red")
        await pilot.press("escape")
        screen = await open_server(pilot, app, fleet["cloud_init"])
        health = text(app, "#server-health")
        assert "not watched (cloud_init)" in health and "last heartbeat none yet" in health
