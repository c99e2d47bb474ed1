"""The getMe client and the deploy's token check: answers, policy, memory, no token in errors."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from core.cloud.telegram import (
    BotApi,
    TelegramTokenRejected,
    TelegramUnreachable,
    TokenCheck,
    Verdict,
)
from core.platform.settings import Settings

TOKEN = "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"


def _api(handler: httpx.MockTransport) -> BotApi:
    return BotApi("https://telegram.test/", transport=handler)


def _answer(status: int, body: object) -> httpx.MockTransport:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(status, json=body)

    transport = httpx.MockTransport(handle)
    transport.calls = calls  # type: ignore[attr-defined]
    return transport


def test_get_me_asks_the_bot_api_with_the_token_in_the_path() -> None:
    transport = _answer(200, {"ok": True, "result": {"id": 7123456789, "username": "r8_bot"}})
    bot = asyncio.run(_api(transport).get_me(TOKEN))
    assert (bot.id, bot.username) == (7123456789, "r8_bot")
    assert transport.calls == [f"/bot{TOKEN}/getMe"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [401, 404])
def test_401_and_404_reject_the_token(status: int) -> None:
    body = {"ok": False, "error_code": status, "description": "Unauthorized"}
    with pytest.raises(TelegramTokenRejected) as info:
        asyncio.run(_api(_answer(status, body)).get_me(TOKEN))
    assert (info.value.code, info.value.field) == ("telegram_token_rejected", "telegram_bot_token")
    assert TOKEN not in str(info.value) and str(status) in str(info.value)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"ok": False, "error_code": 500, "description": "Internal"}),
        (429, {"ok": False, "error_code": 429, "description": "Too Many Requests"}),
        (401, "<html>proxy says no</html>"),  # not the Bot API answering
        (200, {"ok": True, "result": "odd"}),
    ],
)
def test_anything_else_is_unreachable_not_a_verdict(status: int, body: object) -> None:
    with pytest.raises(TelegramUnreachable) as info:
        asyncio.run(_api(_answer(status, body)).get_me(TOKEN))
    assert info.value.transient and TOKEN not in str(info.value)


def test_a_network_error_names_its_kind_never_the_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect to {request.url}", request=request)

    with pytest.raises(TelegramUnreachable) as info:
        asyncio.run(_api(httpx.MockTransport(refuse)).get_me(TOKEN))
    assert str(info.value) == "Telegram Bot API unreachable (ConnectError)"
    assert info.value.__cause__ is None and info.value.__suppress_context__


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_valid_answer_is_remembered_for_a_while_by_hash() -> None:
    transport = _answer(200, {"ok": True, "result": {"id": 1}})
    clock = Clock()
    check = TokenCheck(_api(transport), ttl=60, clock=clock)
    assert asyncio.run(check.check(TOKEN, customer_id="c")) is Verdict.VALID
    assert asyncio.run(check.check(TOKEN, customer_id="c")) is Verdict.CACHED
    assert TOKEN not in repr(check._valid)
    clock.now += 61
    assert asyncio.run(check.check(TOKEN, customer_id="c")) is Verdict.VALID
    assert len(transport.calls) == 2  # type: ignore[attr-defined]


def test_the_memory_is_bounded() -> None:
    check = TokenCheck(_api(_answer(200, {"ok": True, "result": {"id": 1}})), capacity=2)
    for n in range(3):
        asyncio.run(check.check(f"{TOKEN}{n}", customer_id="c"))
    assert len(check._valid) == 2


def test_a_rejection_is_never_remembered_and_raises() -> None:
    body = {"ok": False, "error_code": 401, "description": "Unauthorized"}
    transport = _answer(401, body)
    check = TokenCheck(_api(transport))
    for _ in range(2):
        with pytest.raises(TelegramTokenRejected):
            asyncio.run(check.check(TOKEN, customer_id="c"))
    assert len(transport.calls) == 2  # type: ignore[attr-defined]


def test_an_unreachable_telegram_lets_the_deploy_through_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    check = TokenCheck(_api(_answer(502, {"ok": False, "description": "Bad Gateway"})))
    with caplog.at_level(logging.WARNING, logger="core.cloud.telegram"):
        assert asyncio.run(check.check(TOKEN, customer_id="cus_7")) is Verdict.UNCHECKED
    assert "cus_7" in caplog.text and "unchecked" in caplog.text
    assert TOKEN not in caplog.text
    assert not check._valid  # asked again next time


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),  # the simulator, no Telegram URL given: tests never call Telegram
        ({"RACHEL_TELEGRAM_API_URL": "http://127.0.0.1:4010/telegram"}, True),
        ({"RACHEL_TELEGRAM_CHECK": "on"}, True),
        ({"RACHEL_TELEGRAM_CHECK": "off", "RACHEL_TELEGRAM_API_URL": "http://x.test"}, False),
        (
            {
                "HCLOUD_TOKEN": "tok",
                "RACHEL_MASTER_KEYS": "k1:" + "A" * 43,
                "RACHEL_WEBHOOK_SECRETS": "whsec_abc",
                "RACHEL_API_KEYS": "key1",
                "RACHEL_PUBLIC_URL": "https://cp.example.com",
            },
            True,
        ),
    ],
)
def test_the_check_setting(env: dict[str, str], enabled: bool) -> None:
    assert Settings.load(environ=env, env_file=None).telegram_check_enabled is enabled


def test_an_invalid_check_setting_stops_the_process_naming_it() -> None:
    with pytest.raises(Exception, match="RACHEL_TELEGRAM_CHECK"):
        Settings.load(environ={"RACHEL_TELEGRAM_CHECK": "maybe"}, env_file=None)
