"""POST /webhooks/deploy: storage, subscription check, idempotency, limits."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from rq import Queue

from core.models import Customer, Event, Server, WebhookDelivery
from core.vault import reveal
from jobs.queues import START
from tests import factories
from tests.webhook.conftest import (
    BOT_TOKEN,
    CLAUDE,
    PUBLIC_URL,
    Http,
    deploy_payload,
    signed_headers,
)
from webhook.context import WebContext


def _active(customer_id: str = "cus_web_1") -> Customer:
    customer = factories.customer(external_id=customer_id)
    factories.subscription(customer, "active")
    return customer


def test_deploy_stores_encrypted_secrets_creates_and_queues_the_server(
    http: Http, ctx: WebContext, redis_client: redis.Redis
) -> None:
    _active()
    response = http.deploy()
    assert response.status_code == 202, response.text
    body = response.json()
    server = Server.get_by_id(body["server_id"])
    assert body == {
        "server_id": server.id,
        "customer_id": "cus_web_1",
        "status": "pending",
        "created": True,
        "status_url": f"{PUBLIC_URL}/api/servers/{server.id}",
        "events_url": f"{PUBLIC_URL}/api/servers/{server.id}/events",
    }
    assert (server.location, server.server_type) == ("fsn1", "cx23")
    customer = Customer.get(Customer.external_id == "cus_web_1")
    assert customer.email == "cus_web_1@example.com"
    # Encrypted at rest, bound to the row, and they open with the key ring.
    raw = Customer.select(Customer.telegram_bot_token).tuples().first()
    assert BOT_TOKEN not in str(raw)
    assert reveal(ctx.keyring, customer, "telegram_bot_token") == BOT_TOKEN
    assert reveal(ctx.keyring, customer, "claude_credentials") == CLAUDE
    # The creating phase is queued, once, under the server's job id.
    queue = Queue(START, connection=redis_client)
    assert queue.job_ids == [server.job_id]
    assert Event.select().where(Event.server == server).count() == 1


def test_location_and_server_type_are_honoured(tc: Http) -> None:
    _active()
    response = tc.deploy(deploy_payload(location="hel1", server_type="cx33"))
    server = Server.get_by_id(response.json()["server_id"])
    assert (server.location, server.server_type) == ("hel1", "cx33")


def test_same_webhook_id_returns_the_same_answer_and_does_nothing_twice(
    http: Http, redis_client: redis.Redis
) -> None:
    _active()
    first = http.deploy(webhook_id="msg_same")
    again = http.deploy(webhook_id="msg_same")  # re-signed later, as senders retry
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert Server.select().count() == 1
    assert WebhookDelivery.select().count() == 1
    assert Queue(START, connection=redis_client).count == 1


def test_same_webhook_id_with_another_body_is_refused(http: Http) -> None:
    _active()
    first = http.deploy(webhook_id="msg_reused")
    replay = http.deploy(deploy_payload(location="hel1"), webhook_id="msg_reused")
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "webhook_id_reused"
    assert Server.get_by_id(first.json()["server_id"]).location == "fsn1"
    assert Server.select().count() == 1


def test_a_customer_with_a_live_server_gets_that_server(http: Http) -> None:
    _active()
    first = http.deploy()
    second = http.deploy()  # a new delivery (new webhook-id)
    assert second.status_code == 200
    assert second.json()["server_id"] == first.json()["server_id"]
    assert second.json()["created"] is False
    assert Server.select().count() == 1


def test_no_subscription_is_402_and_changes_nothing(http: Http) -> None:
    response = http.deploy()
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "subscription_required"
    assert Customer.select().count() == 0
    assert WebhookDelivery.select().count() == 0


@pytest.mark.parametrize("status", ["past_due", "canceled", "unpaid"])
def test_inactive_subscription_is_402(tc: Http, status: str) -> None:
    customer = factories.customer(external_id="cus_web_1")
    factories.subscription(customer, status)
    response = tc.deploy()
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "subscription_inactive"
    assert Server.select().count() == 0
    assert Customer.get_by_id(customer.id).telegram_bot_token is None


def test_refused_delivery_is_evaluated_again_once_subscribed(tc: Http) -> None:
    assert tc.deploy(webhook_id="msg_early").status_code == 402
    assert tc.subscribe().status_code == 200
    assert tc.deploy(webhook_id="msg_early").status_code == 202


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "validation_error"),
        (b"[]", "validation_error"),
        (json.dumps(deploy_payload(extra_field=1)).encode(), "validation_error"),
        (json.dumps({"customer_id": "cus_web_1"}).encode(), "validation_error"),
        (json.dumps(deploy_payload(telegram_bot_token="nope")).encode(), "validation_error"),
        (json.dumps(deploy_payload(customer_id=5)).encode(), "validation_error"),
        (json.dumps(deploy_payload(location="Not A Location")).encode(), "validation_error"),
        (b'{"a":' * 20 + b"1" + b"}" * 20, "json_too_deep"),
    ],
)
def test_bad_bodies_get_a_clear_400_and_change_nothing(tc: Http, body: bytes, code: str) -> None:
    _active()
    response = tc.deploy(body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert Server.select().count() == 0


def test_validation_errors_do_not_echo_secrets(tc: Http) -> None:
    _active()
    response = tc.deploy(deploy_payload(telegram_bot_token=BOT_TOKEN + " trailing"))
    assert response.status_code == 400
    assert "planted" not in response.text
    assert "telegram_bot_token" in response.text


def test_oversize_body_is_413(http: Http) -> None:
    _active()
    payload = deploy_payload(claude_credentials="x" * 5000)  # the limit is 4096 bytes here
    response = http.deploy(payload)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert Customer.get(Customer.external_id == "cus_web_1").claude_credentials is None


def test_oversize_body_without_content_length_is_413(http: Http) -> None:
    body = json.dumps(deploy_payload(claude_credentials="x" * 5000)).encode()

    def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(body), 1000):
            yield body[i : i + 1000]

    response = http.client.post("/webhooks/deploy", content=chunks(), headers=signed_headers(body))
    assert response.status_code == 413


def test_concurrent_identical_deliveries_create_one_server(served: str) -> None:
    _active()
    body = json.dumps(deploy_payload()).encode()
    headers = signed_headers(body, webhook_id="msg_twins")
    with httpx.Client(base_url=served, timeout=10) as client, ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(
                lambda _: client.post("/webhooks/deploy", content=body, headers=headers), range(6)
            )
        )
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["server_id"] for a in answers}) == 1
    assert Server.select().count() == 1
    assert WebhookDelivery.select().count() == 1


def test_planted_secrets_appear_in_no_response_log_or_redis(
    http: Http, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _active()
    responses = [
        http.deploy(),
        http.deploy(),
        http.api("/api/servers/1"),
        http.api("/api/customers/cus_web_1/server"),
        http.deploy(deploy_payload(email="bad")),
    ]
    assert responses[0].status_code == 202
    texts = [r.text + str(r.headers) for r in responses] + [caplog.text]
    texts += [str(redis_client.dump(key)) for key in redis_client.keys("*")]
    texts += [e.message for e in Event.select()]
    for text in texts:
        for secret in (BOT_TOKEN, "sk-ant-oat01-planted", "planted-telegram"):
            assert secret not in text
