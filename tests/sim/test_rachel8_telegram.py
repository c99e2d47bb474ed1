"""Rachel8 against the simulated Telegram, as grammY behaves: 401 and 409 end its process."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from core.cloud import vps_contract as contract
from sim.rachel8_telegram import ONLINE
from sim.server import SimulatorServer
from sim.vps import Vps
from tests.sim.agent_data import boot, inject, show
from tests.sim.helpers import CallbackReceiver, wait_for
from tests.sim.rachel8_data import TOKEN

RACHEL8 = contract.SERVICE_UNIT
HOOK = "https://hooks.example.com/bot"


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver(status=202)
    yield server
    server.close()


@pytest.fixture
def fast(make_sim: Callable[..., SimulatorServer]) -> SimulatorServer:
    return make_sim(time_scale=0.01)


@pytest.fixture
def bot(fast: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{fast.url}/telegram/bot{TOKEN}", timeout=5) as client:
        yield client


def revoke(sim: SimulatorServer, token: str) -> None:
    headers = {"Authorization": f"Bearer {sim.token}"}
    answer = httpx.post(f"{sim.url}/_sim/telegram/revoke", json={"token": token}, headers=headers)
    assert answer.status_code == 200


def running(vps: Vps) -> Vps:
    wait_for(
        lambda: "Rachel8 is running. Listening for messages..." in vps.systemd.journal(RACHEL8)
    )
    return vps


def test_a_start_greets_the_owner_and_deletes_a_webhook(
    fast: SimulatorServer, receiver: CallbackReceiver, bot: httpx.Client
) -> None:
    assert bot.post("/setWebhook", json={"url": HOOK}).status_code == 200
    vps = boot(fast, "rc-1")
    inject(vps, receiver.url("/heartbeats/1"), None)
    running(vps)
    assert bot.get("/getWebhookInfo").json()["result"]["url"] == ""
    sent = fast.simulator.telegram.messages
    assert [(m.bot_id, m.chat_id, m.text) for m in sent] == [(123456789, "424242", ONLINE)]


def test_a_revoked_token_fails_every_start(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    revoke(fast, TOKEN)
    vps = boot(fast, "rc-1")
    inject(vps, receiver.url("/heartbeats/1"), None)
    wait_for(lambda: show(vps, RACHEL8, "Result")["Result"] == "start-limit-hit", what="limit")
    journal = vps.systemd.journal(RACHEL8)
    assert "[WARN] Startup message attempt 3/3 failed {" in journal
    assert "GrammyError: Call to 'getMe' failed! (401: Unauthorized)" in journal
    assert journal.count("rachel8.service: Main process exited, code=exited, status=1/FAILURE") >= 3
    assert fast.simulator.telegram.messages == []


def test_a_token_revoked_while_rachel8_polls_ends_it(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    vps = boot(fast, "rc-1")
    inject(vps, receiver.url("/heartbeats/1"), None)
    running(vps)
    revoke(fast, "123456789:" + "Z" * 35)  # another token of the bot: nothing happens
    assert show(vps, RACHEL8, "NRestarts") == {"NRestarts": "0"}
    revoke(fast, TOKEN)
    assert "GrammyError: Call to 'getUpdates' failed! (401: Unauthorized)" in vps.systemd.journal(
        RACHEL8
    )
    wait_for(lambda: show(vps, RACHEL8, "Result")["Result"] == "start-limit-hit", what="limit")


def test_a_webhook_set_while_rachel8_polls_costs_one_restart(
    fast: SimulatorServer, receiver: CallbackReceiver, bot: httpx.Client
) -> None:
    vps = boot(fast, "rc-1")
    inject(vps, receiver.url("/heartbeats/1"), None)
    running(vps)
    assert bot.post("/setWebhook", json={"url": HOOK}).json()["description"] == "Webhook was set"
    journal = vps.systemd.journal(RACHEL8)
    assert (
        "GrammyError: Call to 'getUpdates' failed! (409: Conflict: terminated by setWebhook "
        "request)" in journal
    )
    # systemd restarts it (RestartSec=10), and grammY's start deletes the webhook.
    wait_for(lambda: bot.get("/getWebhookInfo").json()["result"]["url"] == "", what="deleted")
    wait_for(lambda: show(vps, RACHEL8, "SubState")["SubState"] == "running", what="running")
    assert show(vps, RACHEL8, "NRestarts", "Result") == {"NRestarts": "1", "Result": "success"}


def test_another_poller_ends_rachel8s_long_poll(
    fast: SimulatorServer, receiver: CallbackReceiver, bot: httpx.Client
) -> None:
    vps = boot(fast, "rc-1")
    inject(vps, receiver.url("/heartbeats/1"), None)
    running(vps)
    assert bot.post("/getUpdates", json={"timeout": 0}).json() == {"ok": True, "result": []}
    assert (
        "GrammyError: Call to 'getUpdates' failed! (409: Conflict: terminated by other "
        "getUpdates request; make sure that only one bot instance is running)"
    ) in vps.systemd.journal(RACHEL8)
    wait_for(lambda: show(vps, RACHEL8, "NRestarts")["NRestarts"] == "1", what="the restart")
