"""The pool & images screen (`p`): each place's target, the pool servers, the images, the costs.

The rows are made by the real stores: pool servers by `pool_store` (started,
their VPS recorded, called back, claimed by a deploy, recycled, deleted),
images by `image_store` (built, available, failed), each at a fixed time. Each
place's target is the refill's own (`jobs.pool.status`), and `r` runs the
refill pass `rachel-cloud pool refill` runs (`jobs.pool.refill_now`).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import redis

from core.domain import image_store, pool_store, releases
from core.domain.callbacks import hash_token
from core.domain.install_outcome import InstallOutcome
from core.domain.pool import Place, PoolState
from core.platform.clock import ManualClock
from core.platform.settings import Settings
from core.security.crypto import KeyRing, generate_key_entry
from core.store.models import PoolServer, Server
from jobs.taskrun import task_run
from tests.conftest import make_settings
from tests.integration.test_pool_store import HOST_KEY
from tests.tui.conftest import SIZE, ago, loaded, make_server, open_screen, wait_for
from tests.tui.test_rollouts import OLD, cells, notices, text
from tests.tui.test_screens import help_text
from tui.app import RachelApp
from tui.screens.confirm import ConfirmChoice
from tui.screens.pool import PoolScreen

pytestmark = pytest.mark.anyio

FSN: Place = ("fsn1", "cx23")
NBG: Place = ("nbg1", "cx33")
#: The pool on, at two places; both server types priced; snapshots priced.
POOL_ON = {
    "RACHEL_POOL": "true",
    "RACHEL_POOL_PLACES": "fsn1/cx23=1..3,nbg1/cx33=1..2",
    "RACHEL_PRICES": "cx23=4.49,cx33=7.49",
    "RACHEL_SNAPSHOT_PRICE": "0.0119",
}
POOL_OFF = {**POOL_ON, "RACHEL_POOL": "false"}
RECYCLED = f"it holds release {OLD[:12]}, not the fleet's"
BUILD_FAILED = "the builder did not call back before its deadline"
TOKEN = "pool-callback-token"
RING = KeyRing([generate_key_entry()])


@pytest.fixture
def pool_env() -> dict[str, str]:
    return POOL_ON


@pytest.fixture
def tui_settings(tmp_path: Path, pool_env: dict[str, str]) -> Settings:
    return make_settings(tmp_path, **pool_env)


def at(seconds: float) -> ManualClock:
    """The clock `seconds` before NOW (each row's time is fixed: deterministic ages)."""
    return ManualClock(ago(seconds))


def started(place: Place, seconds: float, commit: str) -> PoolServer:
    """A `creating` pool server, started `seconds` before NOW."""
    location, server_type = place
    return pool_store.start(
        location=location, server_type=server_type, image="debian-12", commit=commit,
        name_prefix="tui", timeout=600, why="the pool wants more", clock=at(seconds),
    )  # fmt: skip


def booted(row: PoolServer, provider_id: int) -> None:
    assert pool_store.record_vps(row.id, provider_id, f"10.0.2.{row.id}", None)


def warmed(row: PoolServer, seconds: float) -> None:
    """Its callback arrived `seconds` before NOW (the token armed as the refill arms it)."""
    expires = ago(seconds) + timedelta(minutes=5)
    PoolServer.update(callback_token_hash=hash_token(TOKEN), callback_token_expires_at=expires) \
        .where(PoolServer.id == row.id).execute()  # fmt: skip
    install = InstallOutcome(ok=True, commit=row.commit)
    pool_store.accept_pool_callback(
        row.id, TOKEN, HOST_KEY, None, install=install, check_source=False, clock=at(seconds)
    )


def built(commit: str, seconds: float) -> int:
    """A `building` image of `commit`, requested `seconds` before NOW."""
    row = image_store.start_build(
        commit=commit, bun_version="1.2.3", claude_code_version="2.0.1", server_type="cx23",
        location="fsn1", base_image="debian-12", timeout=1800, actor="cron",
        why="the release has no image", clock=at(seconds),
    )  # fmt: skip
    return int(row.id)


def seed_pool(settings: Settings, *, recycling: bool = True) -> dict[str, PoolServer]:
    """Pool servers in every state, a deploy that claimed one, and four images."""
    commit = settings.rachel8_commit
    releases.current(commit, at(90000))
    claimed = started(FSN, 1800, commit)
    booted(claimed, 5001)
    warmed(claimed, 1700)
    deploy = make_server(20, "creating", created=60, changed=60)  # fsn1, cx23
    assert pool_store.claim(deploy, RING, commit=commit, clock=at(55)) is not None
    warm = started(FSN, 1200, commit)
    booted(warm, 5002)
    warmed(warm, 1100)
    booting = started(FSN, 90, commit)
    booted(booting, 5003)
    creating = started(NBG, 10, commit)
    gone = started(FSN, 7200, commit)
    assert pool_store.mark_recycling(gone.id, "surplus", "cron", at(7000))
    assert pool_store.mark_deleted(gone.id, "cron", at(6990))
    rows = {"claimed": claimed, "warm": warm, "booting": booting, "creating": creating}
    if recycling:
        old = started(FSN, 3600, OLD)
        booted(old, 5004)
        warmed(old, 3500)
        assert pool_store.mark_recycling(old.id, RECYCLED, "cron", at(30))
        rows["recycling"] = old
    older = built(OLD, 172800)
    assert image_store.mark_available(older, 9001, 4.2, 40.0, at(172000))
    current = built(commit, 86400)
    assert image_store.mark_available(current, 9002, 5.3, 40.0, at(86000))
    assert image_store.mark_failed(built(commit, 7200), BUILD_FAILED, "cron", at(5400))
    built(commit, 120)
    return rows


@pytest.fixture
def pool(tui_db, tui_settings: Settings) -> dict[str, PoolServer]:
    """The pool and images alone: the one deploy in the window is the claiming one."""
    return seed_pool(tui_settings)


async def open_pool(pilot) -> PoolScreen:
    return await open_screen(pilot, "p", PoolScreen)


async def test_the_places_pool_servers_images_and_costs(pool, make_app, tui_settings) -> None:
    app: RachelApp = make_app()
    commit = tui_settings.rachel8_commit[:12]
    async with app.run_test(size=SIZE) as pilot:
        await open_pool(pilot)
        head = text(app, "#pool-head")
        assert "pool on  2 place(s): 1 warm, 2 being made; target 3" in head
        # Billed: warm, booting, creating, recycling (3 cx23 at 4.49, 1 cx33 at 7.49).
        assert "idle 4 billed pool server(s): €0.029/h, €20.96/month" in head
        assert "images 9.5 GB stored: €0.11/month" in head  # the two available ones
        # The target is the refill's: one deploy at fsn1/cx23 in the window wants 2 there.
        assert cells(app, "#pool-places") == [
            ["fsn1/cx23", "1", "1", "2", "1..3"],
            ["nbg1/cx33", "0", "1", "1", "1..2"],
        ]
        servers = cells(app, "#pool-servers")
        by_id = {int(row[0]): row[1:] for row in servers}
        assert set(by_id) == {row.id for row in pool.values()}  # the deleted one is not listed
        assert [int(row[0]) for row in servers] == sorted(by_id, reverse=True)
        deploy = Server.get(Server.status == "injecting_secrets")  # took the VPS over
        assert [by_id[pool[name].id] for name in pool] == [
            ["claimed", "fsn1/cx23", "5001", commit, str(deploy.id), "30m00s", "-"],
            ["warm", "fsn1/cx23", "5002", commit, "-", "20m00s", "-"],
            ["booting", "fsn1/cx23", "5003", commit, "-", "1m30s", "-"],
            ["creating", "nbg1/cx33", "-", commit, "-", "10s", "-"],
            ["recycling", "fsn1/cx23", "5004", OLD[:12], "-", "1h00m", RECYCLED],
        ]
        images = cells(app, "#pool-images")
        assert [row[:5] for row in images] == [
            [" ", "4", "building", commit, "-"],
            [" ", "3", "failed", commit, "-"],
            ["*", "2", "available", commit, "5.3"],
            [" ", "1", "available", OLD[:12], "4.2"],
        ]
        assert images[1][6] == BUILD_FAILED
        assert images[2][5] == "2025-12-31 12:00:00"
        await pilot.press("escape")
        assert app.screen is app.fleet


@pytest.mark.parametrize("pool_env", [POOL_OFF])
async def test_the_pool_off_drains(pool, make_app) -> None:
    app: RachelApp = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_pool(pilot)
        assert "the pool is off (RACHEL_POOL=false): it drains" in text(app, "#pool-head")
        assert cells(app, "#pool-places") == [["no place: the pool is off", "", "", "", ""]]
        assert len(cells(app, "#pool-servers")) == 5  # still listed until the refill drains them
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmChoice)
        body = str(app.screen.query_one("#confirm-what").render())
        assert "each of its 3 server(s) being made or warm is recycled" in body
        await pilot.press("n")
        await wait_for(pilot, lambda: "refill cancelled" in notices(app))
        assert PoolServer.select().where(PoolServer.state == PoolState.WARM.value).count() == 1


async def test_refill_asks_first_then_runs_the_clis_pass(
    make_app, tui_settings, redis_client: redis.Redis
) -> None:
    # Each place at its target, nothing to recycle: the pass calls no Hetzner API.
    seed_pool(tui_settings, recycling=False)
    app: RachelApp = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_pool(pilot)
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmChoice)
        assert app.screen.question == "Run a pool refill pass now?"
        assert "(0 server(s) now)" in str(app.screen.query_one("#confirm-what").render())
        await pilot.press("escape")
        await wait_for(pilot, lambda: "refill cancelled" in notices(app))

        await pilot.press("r", "y")
        await wait_for(pilot, lambda: "pool: found 0; did 0; 0 errors" in notices(app))
        assert app.screen is screen
        # A pass already running: refused, and said why.
        with task_run(redis_client, "pool") as held:
            assert held is not None
            await pilot.press("r", "y")
            await wait_for(pilot, lambda: any("refill refused" in n for n in notices(app)))
        assert any("a pool refill is running" in n for n in notices(app))


async def test_read_only_offers_no_refill(pool, make_app) -> None:
    app: RachelApp = make_app(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("question_mark")
        assert "Pool" in help_text(app.screen)  # the fleet's key to this screen
        await pilot.press("escape")
        screen = await open_pool(pilot)
        await pilot.press("question_mark")
        keys = help_text(app.screen)
        assert "Back" in keys and "Reload" in keys and "Refill" not in keys
        await pilot.press("escape", "r")
        await pilot.pause()
        assert app.screen is screen  # no question asked


def test_pool_screen_snapshot(pool, make_app, snap_compare) -> None:
    async def ready(pilot) -> None:
        await open_pool(pilot)
        await pilot.pause()

    assert snap_compare(make_app(), terminal_size=SIZE, run_before=ready)
