"""The simulated Telegram Bot API over HTTP: getMe, sendMessage, getWebhookInfo, revocation."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from sim.server import SimulatorServer

TOKEN = "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"
UNAUTHORIZED = {"ok": False, "error_code": 401, "description": "Unauthorized"}
NOT_FOUND = {"ok": False, "error_code": 404, "description": "Not Found"}


@pytest.fixture
def bot_api(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{sim.url}/telegram", timeout=5) as client:
        yield client


@pytest.fixture
def admin(sim: SimulatorServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {sim.token}"}
    with httpx.Client(base_url=f"{sim.url}/_sim/telegram", timeout=5, headers=headers) as client:
        yield client


def test_get_me_knows_a_well_formed_token(bot_api: httpx.Client) -> None:
    response = bot_api.get(f"/bot{TOKEN}/getMe")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["result"]["id"] == 7123456789
    assert body["result"]["is_bot"] is True
    assert body["result"]["username"].endswith("_bot")


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/bot123:short/getMe", 401, UNAUTHORIZED),  # shaped like a token, not one
        ("/bot1234567:" + "A" * 35 + "/getMe", 401, UNAUTHORIZED),  # 7 digits
        ("/botnonsense/getMe", 401, UNAUTHORIZED),
        (f"/bot{TOKEN}/noSuchMethod", 404, NOT_FOUND),
        (f"/{TOKEN}/getMe", 404, NOT_FOUND),
        ("/getMe", 404, NOT_FOUND),
    ],
)
def test_what_is_not_a_bot_answers_as_telegram_does(
    bot_api: httpx.Client, path: str, status: int, body: dict[str, object]
) -> None:
    response = bot_api.get(path)
    assert (response.status_code, response.json()) == (status, body)


def test_a_revoked_token_is_unauthorized_until_restored(
    bot_api: httpx.Client, admin: httpx.Client
) -> None:
    assert admin.post("/revoke", json={"token": TOKEN}).json() == {"revoked": True}
    response = bot_api.post(f"/bot{TOKEN}/getMe")
    assert (response.status_code, response.json()) == (401, UNAUTHORIZED)
    other = "7123456789:" + "B" * 35  # a new token of the same bot works
    assert bot_api.get(f"/bot{other}/getMe").status_code == 200
    admin.post("/restore", json={"token": TOKEN})
    assert bot_api.get(f"/bot{TOKEN}/getMe").status_code == 200


def test_send_message_is_recorded_by_bot_and_chat(
    bot_api: httpx.Client, admin: httpx.Client
) -> None:
    sent = bot_api.post(f"/bot{TOKEN}/sendMessage", json={"chat_id": 42, "text": "hello"})
    assert sent.status_code == 200
    result = sent.json()["result"]
    assert (result["chat"]["id"], result["text"], result["from"]["id"]) == (42, "hello", 7123456789)
    form = bot_api.post(f"/bot{TOKEN}/sendMessage", data={"chat_id": "43", "text": "form"})
    assert form.status_code == 200
    listed = admin.get("/messages", params={"chat_id": "42"}).json()["messages"]
    assert [(m["bot_id"], m["chat_id"], m["text"]) for m in listed] == [(7123456789, "42", "hello")]
    assert TOKEN not in admin.get("/messages").text  # tokens are never kept
    assert len(admin.get("/messages").json()["messages"]) == 2
    admin.delete("/messages")
    assert admin.get("/messages").json() == {"messages": []}


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"text": "hi"}, "Bad Request: chat_id is empty"),
        ({"chat_id": 1, "text": " "}, "Bad Request: message text is empty"),
    ],
)
def test_send_message_needs_a_chat_and_a_text(
    bot_api: httpx.Client, params: dict[str, object], description: str
) -> None:
    response = bot_api.post(f"/bot{TOKEN}/sendMessage", json=params)
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error_code": 400, "description": description}


def test_no_webhook_is_set(bot_api: httpx.Client) -> None:
    info = bot_api.get(f"/bot{TOKEN}/getWebhookInfo").json()
    assert info == {
        "ok": True,
        "result": {"url": "", "has_custom_certificate": False, "pending_update_count": 0},
    }


def _described(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["description"]


def test_a_webhook_is_the_bots_until_deleted(bot_api: httpx.Client) -> None:
    hook = "https://hooks.example.com/bot"
    assert _described(bot_api.post(f"/bot{TOKEN}/setWebhook", json={"url": hook})) == (
        200,
        "Webhook was set",
    )
    again = bot_api.post(f"/bot{TOKEN}/setWebhook", data={"url": hook})
    assert again.json() == {"ok": True, "result": True, "description": "Webhook is already set"}
    other_token = "7123456789:" + "B" * 35  # the same bot: the same webhook
    info = bot_api.get(f"/bot{other_token}/getWebhookInfo").json()["result"]
    assert (info["url"], info["max_connections"]) == (hook, 40)
    other_bot = "8123456789:" + "C" * 35
    assert bot_api.get(f"/bot{other_bot}/getWebhookInfo").json()["result"]["url"] == ""
    polled = bot_api.post(f"/bot{TOKEN}/getUpdates")
    assert polled.status_code == 409
    assert polled.json()["description"].startswith(
        "Conflict: can't use getUpdates method while webhook is active"
    )
    assert _described(bot_api.post(f"/bot{TOKEN}/deleteWebhook")) == (200, "Webhook was deleted")
    assert _described(bot_api.post(f"/bot{TOKEN}/deleteWebhook")) == (
        200,
        "Webhook is already deleted",
    )
    assert bot_api.post(f"/bot{TOKEN}/getUpdates").json() == {"ok": True, "result": []}
    bot_api.post(f"/bot{TOKEN}/setWebhook", json={"url": hook})
    assert _described(bot_api.post(f"/bot{TOKEN}/setWebhook", json={"url": ""})) == (
        200,
        "Webhook was deleted",
    )


@pytest.mark.parametrize(
    ("params", "description"),
    [
        ({"url": "http://hooks.example.com/"}, "An HTTPS URL must be provided for webhook"),
        ({"url": "https://hooks.example.com:1234/"}, "only on ports 80, 88, 443 or 8443"),
        ({"url": "https:///nohost"}, "Failed to resolve host"),
        ({"url": "https://hooks.example.com/", "max_connections": 101}, "max_connections"),
        ({"url": "https://hooks.example.com/", "secret_token": "a b"}, "unallowed characters"),
    ],
)
def test_a_webhook_telegram_refuses(
    bot_api: httpx.Client, params: dict[str, object], description: str
) -> None:
    refused = bot_api.post(f"/bot{TOKEN}/setWebhook", json=params)
    assert refused.status_code == 400 and description in refused.json()["description"]
    assert refused.json()["description"].startswith("Bad Request: ")
    assert bot_api.get(f"/bot{TOKEN}/getWebhookInfo").json()["result"]["url"] == ""


def test_a_revoked_token_is_unauthorized_for_every_method(
    bot_api: httpx.Client, admin: httpx.Client
) -> None:
    admin.post("/revoke", json={"token": TOKEN})
    for method in ("getMe", "getWebhookInfo", "setWebhook", "deleteWebhook", "getUpdates"):
        answer = bot_api.post(f"/bot{TOKEN}/{method}", json={"url": "https://x.example.com/"})
        assert (answer.status_code, answer.json()) == (401, UNAUTHORIZED), method


def test_the_admin_api_needs_the_simulator_token_and_reset_clears_it(
    sim: SimulatorServer, bot_api: httpx.Client, admin: httpx.Client
) -> None:
    anonymous = httpx.post(f"{sim.url}/_sim/telegram/revoke", json={"token": TOKEN})
    assert anonymous.status_code == 401
    assert admin.post("/revoke", json={}).status_code == 422  # invalid_input, as Hetzner
    admin.post("/revoke", json={"token": TOKEN})
    bot_api.post(f"/bot{TOKEN}/sendMessage", json={"chat_id": 1, "text": "x"})
    assert admin.post(f"{sim.url}/_sim/reset").status_code == 200
    assert bot_api.get(f"/bot{TOKEN}/getMe").status_code == 200
    assert admin.get("/messages").json() == {"messages": []}
