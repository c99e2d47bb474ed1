"""The fleet screen in a running app: filter, sort, marks, live updates, safety refresh."""

from __future__ import annotations

import pytest
import redis

from core.domain.events import redis_publisher
from core.domain.lifecycle import transition
from core.platform.clock import ManualClock
from core.store.models import Server
from tests.tui.conftest import SIZE, loaded, make_server, wait_for
from tui.app import RachelApp
from tui.widgets import FleetTable

pytestmark = pytest.mark.anyio


def table(app: RachelApp) -> FleetTable:
    return app.fleet.query_one(FleetTable)


def ids(app: RachelApp) -> list[int]:
    t = table(app)
    return [int(str(t.get_row_at(i)[1])) for i in range(t.row_count)]


def cell(app: RachelApp, server_id: int, column: str) -> str:
    return str(table(app).get_cell(str(server_id), column))


async def test_rows_newest_first_deleted_hidden_until_asked(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert ids(app) == [10, 8, 7, 6, 5, 4, 3, 2, 1]
        assert cell(app, 4, "status") == "cloud_init"
        assert cell(app, 4, "phase") == "■■□□ 2/4"
        assert cell(app, 4, "in_phase") == "1m20s"
        assert cell(app, 4, "total") == "1m40s/120s"
        assert cell(app, 1, "last_event") == "transition: injecting_secrets -> ready"
        await pilot.press("a")
        await wait_for(pilot, lambda: 9 in ids(app))
        await pilot.press("a")
        await wait_for(pilot, lambda: 9 not in ids(app))


async def test_filter_text_terms_and_number_keys(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("slash", *"status:failed")
        assert ids(app) == [10, 6]
        await pilot.press("enter")  # leave the field, the filter stays
        assert table(app).has_focus
        assert ids(app) == [10, 6]
        await pilot.press("escape")  # clears the filter
        assert len(ids(app)) == 9
        await pilot.press("slash", *"10.0.0.", "enter")
        assert ids(app) == [10, 8, 5, 4, 2, 1]
        await pilot.press("3")  # failed, combined with the text
        assert ids(app) == [10]
        await pilot.press("1")  # in flight
        assert ids(app) == [5, 4]
        await pilot.press("0")
        assert ids(app) == [10, 8, 5, 4, 2, 1]
        await pilot.press("escape")
        await pilot.press("5")  # deleted: asks for deleted rows, loads them
        await wait_for(pilot, lambda: ids(app) == [9])
        await pilot.press("2")
        assert ids(app) == [2, 1]


async def test_sort_by_any_column(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("s")  # next column after id: customer, ascending
        assert app.fleet.model is not None and app.fleet.model.sort_column == "customer"
        assert ids(app) == [1, 2, 3, 4, 5, 6, 7, 8, 10]
        await pilot.press("S")
        assert ids(app) == [10, 8, 7, 6, 5, 4, 3, 2, 1]
        app.fleet.sort_by("status")
        await pilot.pause()
        statuses = [cell(app, i, "status") for i in ids(app)]
        assert statuses == [
            "pending",
            "creating",
            "cloud_init",
            "injecting_secrets",
            "ready",
            "ready",
            "failed",
            "failed",
            "deprovisioning",
        ]
        await pilot.click(FleetTable, offset=(40, 0))  # header cell of STATUS: reverse
        assert cell(app, ids(app)[0], "status") == "deprovisioning"
        app.fleet.sort_by("total")
        await pilot.pause()
        assert ids(app)[:2] == [7, 3]  # the least provisioning time so far first


async def test_live_update_changes_the_row_and_keeps_the_cursor(
    fleet, make_app, redis_client: redis.Redis, clock: ManualClock
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("down", "down")  # cursor on server 7
        assert table(app).cursor_key() == "7"
        before = app.fleet.live_batches
        publish = redis_publisher(redis_client)
        transition(
            fleet["cloud_init"].id,
            "cloud_init",
            "injecting_secrets",
            message="callback received",
            clock=clock,
            publish=publish,
        )
        await wait_for(pilot, lambda: cell(app, 4, "status") == "injecting_secrets")
        assert cell(app, 4, "last_event") == "transition: callback received"
        assert cell(app, 4, "phase") == "■■■□ 3/4"
        assert app.fleet.live_batches > before
        assert table(app).cursor_key() == "7"

        # A new server arrives, one is deleted: rows added and removed by key.
        new = make_server(11, "pending", created=0, changed=0)
        transition(new.id, "pending", "creating", message="creating", clock=clock, publish=publish)
        await wait_for(pilot, lambda: 11 in ids(app))
        assert ids(app)[0] == 11
        assert table(app).cursor_key() == "7"
        transition(
            fleet["deprovisioning"].id,
            "deprovisioning",
            "deleted",
            message="gone",
            clock=clock,
            publish=publish,
        )
        await wait_for(pilot, lambda: 8 not in ids(app))
        assert table(app).cursor_key() == "7"


async def test_safety_refresh_catches_unpublished_changes(fleet, make_app) -> None:
    app = make_app(refresh_seconds=0.3)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        Server.update(ipv4="10.9.9.9").where(Server.id == fleet["creating"].id).execute()
        await wait_for(pilot, lambda: cell(app, 3, "ipv4") == "10.9.9.9")


async def test_time_cells_tick(fleet, make_app, clock: ManualClock) -> None:
    app = make_app(tick_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        clock.advance(30)
        await wait_for(pilot, lambda: cell(app, 3, "in_phase") == "50s")
        assert cell(app, 3, "total") == "1m00s/120s"


async def test_marks_and_summary(fleet, make_app) -> None:
    app = make_app(summary_seconds=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("space", "space")
        assert app.fleet.model is not None
        assert app.fleet.model.marked == {"10", "8"}
        assert cell(app, 10, "mark") == "●"
        await pilot.press("u")
        assert app.fleet.model.marked == set()
        await wait_for(pilot, lambda: app.fleet.summary is not None)
        text = str(app.fleet.query_one("#summary").render())
        assert "failed 2" in text and "p50 117.5s" in text and "SLA(120s) 50%" in text
        assert "workers 0" in text
