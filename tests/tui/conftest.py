"""TUI fixtures: a seeded fleet at a fixed time, a real backend, and app helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import peewee
import pytest
import pytest_textual_snapshot
import redis
from textual import events
from textual.keys import _character_to_key
from textual.pilot import Pilot

from cli.tui import operations
from core.domain import heartbeats
from core.domain.heartbeats import HeartbeatStore
from core.platform.clock import ManualClock
from core.platform.settings import Settings
from core.security.crypto import KeyRing, generate_key_entry
from core.store import migrations
from core.store.db import init_database
from core.store.models import Customer, Event, Server
from core.store.vault import seal
from tests import factories
from tests.conftest import make_settings
from tests.unit.core.domain.test_heartbeats import beat
from tui.app import RachelApp
from tui.backend import Backend
from tui.screens.base import LoadingScreen

LoadedT = TypeVar("LoadedT", bound=LoadingScreen[Any])

# pytest-textual-snapshot 1.0 names its extension with syrupy 4's `_file_extension`;
# syrupy 5+ reads `file_extension`, and would store the SVG snapshots as `.raw`.
pytest_textual_snapshot.SVGImageExtension.file_extension = "svg"

NOW = datetime(2026, 1, 1, 12, 0, 0)
#: Seals the seeded customers' secrets; the TUI never opens them.
_RING = KeyRing([generate_key_entry()])
OPERATOR = "operator:alice"
SIZE = (160, 40)


@pytest.fixture
def tui_db(tmp_path: Path) -> Iterator[peewee.Database]:
    """A fresh, migrated SQLite database (the pilot tests; queries run on both backends)."""
    database = init_database(f"sqlite:///{tmp_path / 'tui.db'}")
    database.connect(reuse_if_open=True)
    migrations.upgrade(database)
    try:
        yield database
    finally:
        if not database.is_closed():
            database.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def tui_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def backend(
    tui_db: peewee.Database, redis_client: redis.Redis, tui_settings: Settings, clock: ManualClock
) -> Backend:
    """The real backend: this Redis, this database, the `jobs` operator functions, the
    settings' prices (as `cli.tui.run_tui` builds it)."""
    return Backend(
        redis_client,
        operations(redis_client, tui_settings),
        tui_settings.sla_seconds,
        OPERATOR,
        clock,
        prices=tui_settings.server_prices,
        snapshot_price=tui_settings.snapshot_price_gb_month,
    )


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def make_server(
    n: int,
    status: str,
    *,
    created: float,
    changed: float,
    path: tuple[tuple[str, float], ...] = (),
    **fields: object,
) -> Server:
    """Server `n` (customer `cus_{n:03d}`) in `status`, with transition events along `path`.

    Times are seconds before NOW; `path` is (status, seconds ago) for each transition.
    """
    owner = Customer.create(
        external_id=f"cus_{n:03d}",
        email=f"c{n}@example.com",
        created_at=NOW,
        owner_telegram_user_id=factories.OWNER_ID,
    )
    # A customer with all Rachel8 needs: operators' retries and re-injects refuse others.
    seal(_RING, owner, "telegram_bot_token", factories.bot_token(f"tui-{n}"))
    seal(_RING, owner, "claude_credentials", factories.claude_document(f"tui-{n}"))
    owner.save()
    values: dict[str, object] = {
        "customer": owner,
        "name": f"rachel-{n}",
        "status": status,
        "location": "fsn1" if n % 3 else "nbg1",
        "server_type": "cx23",
        "image": "debian-12",
        "created_at": ago(created),
        "updated_at": ago(changed),
        "status_changed_at": ago(changed),
    }
    values.update(fields)
    server: Server = Server.create(**values)
    previous = "pending"
    for target, when in path:
        Event.create(
            server=server,
            at=ago(when),
            kind="transition",
            message=f"{previous} -> {target}",
            actor="system",
            from_status=previous,
            to_status=target,
        )
        previous = target
    return server


#: Why the seeded unhealthy server is down (its health reason).
DOWN_REASON = "Rachel8 failed (exit-code, exit status 1, 5 automatic restarts)"


def unhealthy(server: Server) -> Server:
    """`server`, healthy since ready, then down: its health, probe and repair events."""
    steps = (
        (700, "health", "healthy", "every check passed"),
        (300, "health", "degraded", "systemd restarted Rachel8 (1 restart)"),
        (240, "health", "healthy", "every check passed"),
        (90, "health", "unhealthy", DOWN_REASON),
        (85, "repair", None, "restart 1 of 3: Rachel8 failed (start-limit-hit)"),
        (60, "probe", None, "Rachel8 failed/failed; agent timer active, last run success"),
    )
    previous = "unknown"
    for seconds, kind, state, message in steps:
        Event.create(
            server=server,
            at=ago(seconds),
            kind=kind,
            message=message,
            actor="cron",
            from_status=previous if state else None,
            to_status=state,
        )
        previous = state or previous
    server.health, server.health_reason, server.health_changed_at = (
        "unhealthy",
        DOWN_REASON,
        ago(90),
    )
    server.save()
    return server


def heard(client: redis.Redis, server: Server, seconds_ago: float) -> None:
    """Record a heartbeat of `server` (at its address) as arrived `seconds_ago` before NOW."""
    credential, digest = heartbeats.new_credential()
    heartbeats.register(client, server.id, digest, str(server.ipv4))
    sent = beat(seq=1)
    HeartbeatStore(client).record(
        server.id,
        credential,
        str(server.ipv4),
        sent,
        body=heartbeats.encode(sent),
        now=ago(seconds_ago).replace(tzinfo=UTC).timestamp(),
    )


def seed_fleet() -> dict[str, Server]:
    """A small fleet in every status, at fixed times (deterministic snapshots)."""
    ready = (("creating", 300), ("cloud_init", 280), ("injecting_secrets", 215), ("ready", 205))
    return {
        "ready": make_server(
            1,
            "ready",
            created=300,
            changed=205,
            path=ready,
            ipv4="10.0.0.1",
            provider_id=1001,
            provisioning_seconds=95.0,
            ready_at=ago(205),
            health="healthy",
            health_changed_at=ago(170),
        ),
        "slow": unhealthy(
            make_server(
                2,
                "ready",
                created=900,
                changed=760,
                ipv4="10.0.0.2",
                provider_id=1002,
                provisioning_seconds=140.0,
                ready_at=ago(760),
                path=(
                    ("creating", 899),
                    ("cloud_init", 850),
                    ("injecting_secrets", 770),
                    ("ready", 760),
                ),
            )
        ),
        "creating": make_server(3, "creating", created=30, changed=20, path=(("creating", 20),)),
        "cloud_init": make_server(
            4,
            "cloud_init",
            created=100,
            changed=80,
            ipv4="10.0.0.4",
            provider_id=1004,
            path=(("creating", 95), ("cloud_init", 80)),
        ),
        "injecting": make_server(
            5,
            "injecting_secrets",
            created=110,
            changed=5,
            ipv4="10.0.0.5",
            provider_id=1005,
            path=(("creating", 105), ("cloud_init", 90), ("injecting_secrets", 5)),
        ),
        "failed": make_server(
            6,
            "failed",
            created=600,
            changed=500,
            failed_phase="creating",
            last_error="hcloud: server limit exceeded (resource_limit_exceeded)",
            path=(("creating", 590), ("failed", 500)),
        ),
        "pending": make_server(7, "pending", created=2, changed=2),
        "deprovisioning": make_server(
            8,
            "deprovisioning",
            created=5000,
            changed=10,
            ipv4="10.0.0.8",
            provider_id=1008,
            path=(
                ("creating", 4990),
                ("cloud_init", 4970),
                ("injecting_secrets", 4900),
                ("ready", 4890),
                ("deprovisioning", 10),
            ),
        ),
        "deleted": make_server(
            9,
            "deleted",
            created=9000,
            changed=3000,
            path=(("failed", 8000), ("deprovisioning", 3100), ("deleted", 3000)),
        ),
        "failed_inject": make_server(
            10,
            "failed",
            created=400,
            changed=300,
            failed_phase="injecting_secrets",
            ipv4="10.0.0.10",
            provider_id=1010,
            last_error="ssh: service rachel8 not active",
            path=(
                ("creating", 395),
                ("cloud_init", 380),
                ("injecting_secrets", 320),
                ("failed", 300),
            ),
        ),
    }


@pytest.fixture
def fleet(tui_db: peewee.Database) -> dict[str, Server]:
    return seed_fleet()


@pytest.fixture
def make_app(backend: Backend) -> Callable[..., RachelApp]:
    """Build the app on the real backend (fast timers unless told otherwise)."""

    def build(**options: object) -> RachelApp:
        values: dict[str, object] = {"refresh_seconds": 3600.0, "summary_seconds": 3600.0}
        values.update(options)
        return RachelApp(backend, **values)  # type: ignore[arg-type]

    return build


async def wait_for(pilot: Pilot[None], predicate: Callable[[], bool], timeout: float = 8.0) -> None:
    """Let the app run until `predicate()` holds (fails the test after `timeout`)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.05)
    await asyncio.sleep(0)


async def loaded(pilot: Pilot[None]) -> None:
    """Wait until the fleet screen applied its first full refresh and live is connected."""
    app = pilot.app
    assert isinstance(app, RachelApp)
    await wait_for(pilot, lambda: app.fleet.refreshes >= 1)
    if app.live:
        await wait_for(pilot, lambda: app.live_connected)
    await pilot.pause()


async def open_screen(pilot: Pilot[None], key: str, kind: type[LoadedT]) -> LoadedT:
    """Press `key` on the loaded fleet screen; the `kind` screen it opens, once it has read."""
    await loaded(pilot)
    await pilot.press(key)
    screen = pilot.app.screen
    assert isinstance(screen, kind)
    await wait_for(pilot, lambda: screen.loads >= 1)
    return screen


async def burst(pilot: Pilot[None], *keys: str) -> None:
    """Send `keys` in one go, as a terminal delivers a paste: nothing runs in between."""
    app = pilot.app
    for key in keys:
        name = _character_to_key(key) if len(key) == 1 and not key.isalnum() else key
        char = key if len(key) == 1 else "\r" if key == "enter" else None
        event = events.Key(name, char)
        event.set_sender(app)
        app.post_message(event)
    await pilot.pause()
