"""10,000 servers: the table loads them, applies a storm of live updates, filters and sorts.

Behaviour only (row counts, updates applied, keys still answered); the timings
belong to the benchmarks.
"""

from __future__ import annotations

import pytest
import redis

from core.domain.events import publish
from core.store.models import Customer, Event, Server
from tests.tui.conftest import NOW, SIZE, ago, loaded, wait_for
from tui.screens.fleet import FIRST_PAGE
from tui.widgets import FleetTable

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

N = 10_000
UPDATED = 1_000


def seed_many(n: int) -> None:
    statuses = ("ready", "creating", "cloud_init", "failed")
    with Customer._meta.database.atomic():
        for start in range(0, n, 500):
            batch = range(start + 1, min(n, start + 500) + 1)
            Customer.insert_many(
                [
                    {
                        "id": i,
                        "external_id": f"cus_{i:05d}",
                        "email": f"c{i}@example.com",
                        "created_at": NOW,
                        "updated_at": NOW,
                    }
                    for i in batch
                ]
            ).execute()
            Server.insert_many(
                [
                    {
                        "id": i,
                        "customer": i,
                        "name": f"rachel-{i}",
                        "status": statuses[i % 4],
                        "location": "fsn1",
                        "server_type": "cx23",
                        "image": "debian-12",
                        "created_at": ago(300),
                        "updated_at": ago(100),
                        "status_changed_at": ago(100),
                        "ipv4": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                        "provisioning_seconds": 90.0 if i % 4 == 0 else None,
                        "ready_at": ago(200) if i % 4 == 0 else None,
                    }
                    for i in batch
                ]
            ).execute()
            Event.insert_many(
                [
                    {
                        "server": i,
                        "at": ago(100),
                        "kind": "transition",
                        "message": "seeded",
                        "actor": "system",
                        "to_status": statuses[i % 4],
                    }
                    for i in batch
                ]
            ).execute()


async def test_ten_thousand_servers_stay_live(tui_db, make_app, redis_client: redis.Redis) -> None:
    seed_many(N)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        table = app.fleet.query_one(FleetTable)
        assert table.row_count == N
        assert table.cursor_key() == str(N)

        # A storm: 1,000 creating servers move on, each published as a transition.
        moved = [i for i in range(1, 4 * UPDATED + 1) if i % 4 == 1]
        Server.update(status="cloud_init", status_changed_at=NOW).where(
            Server.id.in_(moved)
        ).execute()
        for i in moved:
            publish(
                redis_client,
                {
                    "type": "transition",
                    "server_id": i,
                    "from": "creating",
                    "to": "cloud_init",
                    "at": NOW.isoformat(),
                    "actor": "system",
                    "message": "booted",
                },
            )
        await pilot.press("down")  # the UI keeps answering keys meanwhile
        await wait_for(
            pilot,
            lambda: all(str(table.get_cell(str(i), "status")) == "cloud_init" for i in moved),
            60,
        )
        assert table.row_count == N
        assert table.cursor_key() == str(N - 1)  # cursor stayed on its row

        app.fleet.set_filter("status:cloud_init")
        await pilot.pause()
        assert table.row_count == 2500 + UPDATED
        app.fleet.sort_by("status")
        app.fleet.set_filter("")
        await pilot.pause()
        assert table.row_count == N
        first = str(table.get_row_at(0)[3])
        assert first == "creating"  # sorted by status order: creating before cloud_init


async def test_a_large_fleet_shows_its_newest_servers_first_then_all(tui_db, make_app) -> None:
    seed_many(FIRST_PAGE + 50)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        table = app.fleet.query_one(FleetTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        assert table.row_count in (FIRST_PAGE, FIRST_PAGE + 50)  # the page, or already all
        assert table.cursor_key() == str(FIRST_PAGE + 50)  # the newest on top either way
        await loaded(pilot)
        assert app.fleet.pages == 1 and app.fleet.refreshes == 1
        assert table.row_count == FIRST_PAGE + 50
        keys = [table.coordinate_to_cell_key((r, 0)).row_key.value for r in range(table.row_count)]
        assert keys == [str(i) for i in range(FIRST_PAGE + 50, 0, -1)]  # no row twice or lost


async def test_a_small_fleet_is_read_once(tui_db, make_app) -> None:
    seed_many(FIRST_PAGE - 1)
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert (app.fleet.pages, app.fleet.refreshes) == (0, 1)
        assert app.fleet.query_one(FleetTable).row_count == FIRST_PAGE - 1
