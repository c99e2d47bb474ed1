"""POST /webhooks/deploy: the intake (stored, answered, carried out by a job),
subscription check, idempotency, limits, and GET /api/deploys/{webhook-id}."""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import pytest
import redis
from rq import Queue
from rq.job import Job

from core.domain.intake import payload_binding
from core.security.crypto import KeyRing, generate_key_entry
from core.store.models import Customer, Event, Server, Subscription, WebhookDelivery
from core.store.vault import reveal
from jobs.queues import START
from tests import factories
from tests.webhook.conftest import (
    ACCESS_TOKEN,
    BOT_TOKEN,
    CLAUDE,
    PUBLIC_URL,
    REFRESH_TOKEN,
    Http,
    Intake,
    active,
    deploy_payload,
    signed_headers,
)
from webhook.context import WebContext


def _creating_jobs(client: redis.Redis) -> list[str]:
    return [j for j in Queue(START, connection=client).job_ids if not j.startswith("intake-")]


def test_deploy_is_stored_sealed_answered_then_carried_out_by_the_intake_job(
    http: Http, ctx: WebContext, redis_client: redis.Redis, intake: Intake
) -> None:
    active()
    response = http.deploy(webhook_id="msg_first")
    assert response.status_code == 202, response.text
    status_url = f"{PUBLIC_URL}/api/deploys/msg_first"
    assert response.json() == {
        "webhook_id": "msg_first",
        "customer_id": "cus_web_1",
        "status": "accepted",
        "status_url": status_url,
    }
    # Answered once durable: the delivery is stored, its request sealed, nothing done yet.
    delivery = WebhookDelivery.get_by_id("msg_first")
    assert (delivery.state, delivery.customer_external_id) == ("accepted", "cus_web_1")
    raw = WebhookDelivery.select(WebhookDelivery.payload).tuples().first()
    assert BOT_TOKEN not in str(raw) and "planted" not in str(raw)
    opened = json.loads(ctx.keyring.open(delivery.payload, payload_binding("msg_first")))
    assert opened["telegram_bot_token"] == BOT_TOKEN
    assert Server.select().count() == 0
    assert len(intake.queued()) == 1
    pending = http.api("/api/deploys/msg_first").json()
    assert (pending["state"], pending["server_id"], pending["processed_at"]) == (
        "accepted",
        None,
        None,
    )

    assert intake.run() == 1
    server = Server.get()
    assert (server.location, server.server_type, server.status) == ("fsn1", "cx23", "pending")
    customer = Customer.get(Customer.external_id == "cus_web_1")
    assert customer.email == "cus_web_1@example.com"
    # Encrypted at rest, bound to the row, and they open with the key ring.
    raw = Customer.select(Customer.telegram_bot_token).tuples().first()
    assert BOT_TOKEN not in str(raw)
    assert reveal(ctx.keyring, customer, "telegram_bot_token") == BOT_TOKEN
    assert reveal(ctx.keyring, customer, "claude_credentials") == CLAUDE
    # The creating phase is queued, once, under the server's job id.
    assert _creating_jobs(redis_client) == [server.job_id]
    assert Event.select().where(Event.server == server).count() == 1
    # The outcome is recorded and the sealed request erased.
    delivery = WebhookDelivery.get_by_id("msg_first")
    assert (delivery.state, delivery.payload, delivery.server_id) == ("done", None, server.id)
    done = http.api("/api/deploys/msg_first").json()
    assert done["state"] == "done" and done["processed_at"]
    assert (done["server_id"], done["created"], done["server_url"]) == (
        server.id,
        True,
        f"{PUBLIC_URL}/api/servers/{server.id}",
    )
    assert done["code"] is None and done["message"] is None


def test_location_and_server_type_are_honoured(tc: Http, intake: Intake) -> None:
    active()
    assert tc.deploy(deploy_payload(location="hel1", server_type="cx33")).status_code == 202
    intake.run()
    server = Server.get()
    assert (server.location, server.server_type) == ("hel1", "cx33")


def test_same_webhook_id_returns_the_same_answer_and_does_nothing_twice(
    http: Http, redis_client: redis.Redis, intake: Intake
) -> None:
    active()
    first = http.deploy(webhook_id="msg_same")
    again = http.deploy(webhook_id="msg_same")  # re-signed later, as senders retry
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    intake.run()
    late = http.deploy(webhook_id="msg_same")  # a retry after it was carried out
    assert (late.status_code, late.json()) == (202, first.json())
    assert intake.run() == 0
    assert Server.select().count() == 1
    assert WebhookDelivery.select().count() == 1
    assert len(_creating_jobs(redis_client)) == 1


def test_same_webhook_id_with_another_body_is_refused(http: Http, intake: Intake) -> None:
    active()
    assert http.deploy(webhook_id="msg_reused").status_code == 202
    replay = http.deploy(deploy_payload(location="hel1"), webhook_id="msg_reused")
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "webhook_id_reused"
    intake.run()
    assert Server.get().location == "fsn1"
    assert Server.select().count() == 1


def test_a_customer_with_a_live_server_keeps_that_server(http: Http, intake: Intake) -> None:
    active()
    assert http.deploy(webhook_id="msg_a").status_code == 202
    intake.run()
    assert http.deploy(webhook_id="msg_b").status_code == 202  # a new delivery
    intake.run()
    first, second = (http.api(f"/api/deploys/{w}").json() for w in ("msg_a", "msg_b"))
    assert second["state"] == "done" and second["created"] is False
    assert second["server_id"] == first["server_id"]
    assert Server.select().count() == 1


def test_deploys_in_one_batch_for_one_customer_create_one_server(
    served: str, intake: Intake
) -> None:
    active()
    with httpx.Client(base_url=served, timeout=10) as client, ThreadPoolExecutor(8) as pool:

        def send(i: int) -> int:
            body = json.dumps(deploy_payload()).encode()
            headers = signed_headers(body, webhook_id=f"msg_same_customer_{i}")
            return client.post("/webhooks/deploy", content=body, headers=headers).status_code

        assert set(pool.map(send, range(8))) == {202}
    assert intake.run() == 8
    assert Server.select().count() == 1
    states = [(d.state, d.created_server) for d in WebhookDelivery.select()]
    assert sorted(states) == [("done", False)] * 7 + [("done", True)]


def test_no_subscription_is_402_and_changes_nothing(http: Http, intake: Intake) -> None:
    response = http.deploy()
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "subscription_required"
    assert Customer.select().count() == 0
    assert WebhookDelivery.select().count() == 0
    assert intake.queued() == []


@pytest.mark.parametrize("status", ["past_due", "canceled", "unpaid"])
def test_inactive_subscription_is_402(tc: Http, status: str) -> None:
    customer = factories.customer(external_id="cus_web_1")
    factories.subscription(customer, status)
    response = tc.deploy()
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "subscription_inactive"
    assert Server.select().count() == 0
    assert WebhookDelivery.select().count() == 0
    assert Customer.get_by_id(customer.id).telegram_bot_token is None


def test_refused_delivery_is_evaluated_again_once_subscribed(tc: Http) -> None:
    assert tc.deploy(webhook_id="msg_early").status_code == 402
    assert tc.subscribe().status_code == 200
    assert tc.deploy(webhook_id="msg_early").status_code == 202


def test_a_subscription_that_lapses_before_the_intake_refuses_the_deploy(
    tc: Http, intake: Intake
) -> None:
    customer = active()
    assert tc.deploy(webhook_id="msg_lapsing").status_code == 202
    Subscription.update(status="canceled").where(Subscription.customer == customer).execute()
    assert intake.run() == 1
    assert Server.select().count() == 0
    outcome = tc.api("/api/deploys/msg_lapsing").json()
    assert (outcome["state"], outcome["code"], outcome["server_id"]) == (
        "refused",
        "subscription_inactive",
        None,
    )
    assert "canceled" in outcome["message"]
    assert WebhookDelivery.get_by_id("msg_lapsing").payload is None


def test_an_unreadable_stored_deploy_fails_alone_and_says_why(
    tc: Http, intake: Intake, caplog: pytest.LogCaptureFixture
) -> None:
    active()
    active("cus_web_2")
    assert tc.deploy(webhook_id="msg_tampered").status_code == 202
    assert tc.deploy(deploy_payload("cus_web_2"), webhook_id="msg_fine").status_code == 202
    # Sealed under a key the ring does not hold (a restored backup, a wrong key).
    foreign = KeyRing([generate_key_entry()]).seal("{}", payload_binding("msg_tampered"))
    WebhookDelivery.update(payload=foreign).where(
        WebhookDelivery.webhook_id == "msg_tampered"
    ).execute()
    with caplog.at_level(logging.ERROR):
        assert intake.run() == 2
    failed = tc.api("/api/deploys/msg_tampered").json()
    assert (failed["state"], failed["code"]) == ("failed", "payload_unreadable")
    assert "msg_tampered" in caplog.text and "new webhook-id" in caplog.text
    assert tc.api("/api/deploys/msg_fine").json()["state"] == "done"
    assert [s.customer.external_id for s in Server.select()] == ["cus_web_2"]


def test_deploy_status_of_an_unknown_id_is_404_and_needs_the_api_key(tc: Http) -> None:
    missing = tc.api("/api/deploys/msg_nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert tc.client.get("/api/deploys/msg_nothing").status_code == 401


def test_a_webhook_id_with_a_slash_has_a_working_status_url(http: Http, intake: Intake) -> None:
    active()
    response = http.deploy(webhook_id="msg/with/slashes")
    assert response.status_code == 202
    url = response.json()["status_url"]
    assert url == f"{PUBLIC_URL}/api/deploys/{quote('msg/with/slashes', safe='')}"
    intake.run()
    outcome = http.api(url.removeprefix(PUBLIC_URL)).json()
    assert (outcome["webhook_id"], outcome["state"]) == ("msg/with/slashes", "done")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid_json"),
        (b"", "validation_error"),
        (b"[]", "validation_error"),
        (json.dumps(deploy_payload(extra_field=1)).encode(), "validation_error"),
        (json.dumps({"customer_id": "cus_web_1"}).encode(), "validation_error"),
        (json.dumps(deploy_payload(telegram_bot_token=7)).encode(), "validation_error"),
        (json.dumps(deploy_payload(customer_id=5)).encode(), "validation_error"),
        (json.dumps(deploy_payload(location="Not A Location")).encode(), "validation_error"),
        (b'{"a":' * 20 + b"1" + b"}" * 20, "json_too_deep"),
    ],
)
def test_bad_bodies_get_a_clear_400_and_change_nothing(tc: Http, body: bytes, code: str) -> None:
    active()
    response = tc.deploy(body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert Server.select().count() == 0


def test_validation_errors_do_not_echo_secrets(tc: Http) -> None:
    active()
    response = tc.deploy(deploy_payload(telegram_bot_token=BOT_TOKEN + " trailing"))
    assert response.status_code == 422
    assert "planted" not in response.text
    assert response.json()["error"]["field"] == "telegram_bot_token"


def test_oversize_body_is_413(http: Http) -> None:
    active()
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


def test_concurrent_identical_deliveries_store_one(served: str, intake: Intake) -> None:
    active()
    body = json.dumps(deploy_payload()).encode()
    headers = signed_headers(body, webhook_id="msg_twins")
    with httpx.Client(base_url=served, timeout=10) as client, ThreadPoolExecutor(6) as pool:
        answers = list(
            pool.map(
                lambda _: client.post("/webhooks/deploy", content=body, headers=headers), range(6)
            )
        )
    assert {a.status_code for a in answers} == {202}
    assert len({a.text for a in answers}) == 1
    assert [a.headers.get("idempotent-replayed") for a in answers].count(None) == 1
    assert WebhookDelivery.select().count() == 1
    intake.run()
    assert Server.select().count() == 1


def test_a_burst_of_deploys_is_stored_whole_and_queues_one_intake_job(
    served: str, intake: Intake, redis_client: redis.Redis
) -> None:
    ids = [f"cus_burst_{i}" for i in range(60)]
    for cid in ids:
        active(cid)
    with httpx.Client(base_url=served, timeout=20) as client, ThreadPoolExecutor(16) as pool:

        def send(cid: str) -> int:
            body = json.dumps(deploy_payload(cid)).encode()
            response = client.post("/webhooks/deploy", content=body, headers=signed_headers(body))
            return response.status_code

        assert set(pool.map(send, ids)) == {202}
    assert WebhookDelivery.select().where(WebhookDelivery.state == "accepted").count() == 60
    # One job serves every deploy stored before it starts.
    assert len(intake.queued()) == 1
    assert intake.run() == 60
    assert sorted(s.customer.external_id for s in Server.select()) == sorted(ids)
    # Every creating phase is queued (beyond the create concurrency, RQ holds them back).
    servers = list(Server.select())
    assert all(s.job_id and Job.exists(s.job_id, connection=redis_client) for s in servers)
    # Once it ran, the next deploy queues a job of its own.
    active("cus_after")
    with httpx.Client(base_url=served, timeout=10) as client:
        body = json.dumps(deploy_payload("cus_after")).encode()
        assert client.post("/webhooks/deploy", content=body, headers=signed_headers(body))
    assert len(intake.queued()) == 1


def test_planted_secrets_appear_in_no_response_log_or_redis(
    http: Http, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture, intake: Intake
) -> None:
    caplog.set_level(logging.DEBUG)
    active()
    responses = [http.deploy(), http.deploy()]
    intake.run()
    responses += [
        http.api("/api/servers/1"),
        http.api("/api/customers/cus_web_1/server"),
        http.api(f"/api/deploys/{responses[0].json()['webhook_id']}"),
        http.deploy(deploy_payload(email="bad")),
    ]
    assert responses[0].status_code == 202
    texts = [r.text + str(r.headers) for r in responses] + [caplog.text]
    texts += [str(redis_client.dump(key)) for key in redis_client.keys("*")]
    texts += [e.message for e in Event.select()]
    texts += [str(row) for row in WebhookDelivery.select().tuples()]
    for text in texts:
        for secret in (BOT_TOKEN, ACCESS_TOKEN, REFRESH_TOKEN, "planted"):
            assert secret not in text
