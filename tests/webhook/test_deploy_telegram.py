"""The deploy's bot token check with Telegram's getMe, against the simulated Bot API over HTTP.

The web app and the simulator are both served on loopback; the simulator's
admin API revokes tokens the way BotFather does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import peewee
import pytest
import redis

from core.platform.settings import Settings
from core.store.models import Customer, Server, WebhookDelivery
from jobs.work import RQWork
from sim.config import SimConfig
from sim.server import SimulatorServer
from tests import factories
from tests.conftest import make_settings
from tests.sim.conftest import free_port
from tests.webhook.conftest import BOT_TOKEN, Http, Served, deploy_payload
from webhook.app import create_app
from webhook.context import WebContext


@pytest.fixture
def telegram_sim(tmp_path: Path) -> Iterator[SimulatorServer]:
    with SimulatorServer(SimConfig(ssh_port=free_port(), vps_dir=tmp_path)) as sim:
        yield sim


def _serve(settings: Settings, telegram_url: str) -> Iterator[Http]:
    checked = make_settings(
        settings.data_dir.parent, **{**settings.source, "RACHEL_TELEGRAM_API_URL": telegram_url}
    )
    assert checked.telegram_check_enabled  # auto: on, because the URL was given
    ctx = WebContext.build(checked, RQWork())
    with Served(create_app(ctx)) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield Http(client, "uvicorn")


@pytest.fixture
def checked(
    db: peewee.Database,
    redis_client: redis.Redis,
    web_settings: Settings,
    telegram_sim: SimulatorServer,
) -> Iterator[Http]:
    """The web app checking tokens with the simulated Telegram."""
    yield from _serve(web_settings, f"{telegram_sim.url}/telegram")


@pytest.fixture
def unreachable(
    db: peewee.Database, redis_client: redis.Redis, web_settings: Settings
) -> Iterator[Http]:
    """The web app checking tokens with a Telegram that does not answer (a closed port)."""
    yield from _serve(web_settings, f"http://127.0.0.1:{free_port()}/telegram")


def _revoke(sim: SimulatorServer, token: str) -> None:
    response = httpx.post(
        f"{sim.url}/_sim/telegram/revoke",
        json={"token": token},
        headers={"Authorization": f"Bearer {sim.token}"},
    )
    assert response.status_code == 200


def test_a_token_telegram_rejects_is_422_and_nothing_is_stored(
    checked: Http,
    telegram_sim: SimulatorServer,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    factories.customer(external_id="cus_web_1")
    factories.subscription(Customer.get(external_id="cus_web_1"))
    revoked = factories.bot_token("revoked")
    _revoke(telegram_sim, revoked)
    keys = sorted(redis_client.keys("*"))
    response = checked.deploy(deploy_payload(telegram_bot_token=revoked))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("telegram_token_rejected", "telegram_bot_token")
    assert "401" in error["message"]
    assert WebhookDelivery.select().count() == 0 and Server.select().count() == 0
    assert Customer.get(external_id="cus_web_1").telegram_bot_token is None
    assert sorted(redis_client.keys("*")) == keys
    assert revoked not in caplog.text and revoked not in response.text

    # A token Telegram knows goes through.
    accepted = checked.deploy(deploy_payload(telegram_bot_token=BOT_TOKEN))
    assert accepted.status_code == 202, accepted.text
    assert "Telegram knows the bot token" in caplog.text
    assert BOT_TOKEN not in caplog.text


def test_an_unreachable_telegram_does_not_block_the_deploy(
    unreachable: Http, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    factories.subscription(factories.customer(external_id="cus_web_1"))
    response = unreachable.deploy()
    assert response.status_code == 202, response.text
    assert WebhookDelivery.select().count() == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("could not check the bot token" in w and "cus_web_1" in w for w in warnings)
    assert BOT_TOKEN not in caplog.text
