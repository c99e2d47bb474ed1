"""Standard Webhooks signatures, through the test client and through uvicorn."""

from __future__ import annotations

import json

import pytest

from core.platform.dev_secrets import generate_webhook_secret
from core.store.models import Customer, Server, Subscription, WebhookDelivery
from tests.webhook.conftest import OLD_SECRET, Http, deploy_payload, signed_headers


def _nothing_stored() -> None:
    assert Customer.select().count() == 0
    assert Subscription.select().count() == 0
    assert Server.select().count() == 0
    assert WebhookDelivery.select().count() == 0


def _error(response, status: int, code: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def test_valid_signature_is_accepted(http: Http) -> None:
    response = http.subscribe()
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert Subscription.select().count() == 1


def test_tampered_body_is_rejected(http: Http) -> None:
    body = json.dumps(deploy_payload()).encode()
    headers = signed_headers(body)
    tampered = body.replace(b"cus_web_1", b"cus_web_2")
    _error(
        http.client.post("/webhooks/deploy", content=tampered, headers=headers),
        401,
        "invalid_signature",
    )
    _nothing_stored()


def test_tampered_signature_header_is_rejected(http: Http) -> None:
    body = json.dumps(deploy_payload()).encode()
    headers = signed_headers(body)
    headers["webhook-id"] = headers["webhook-id"] + "x"  # the id is signed too
    _error(
        http.client.post("/webhooks/deploy", content=body, headers=headers),
        401,
        "invalid_signature",
    )
    _nothing_stored()


@pytest.mark.parametrize(
    ("shift", "code"), [(-6 * 60, "stale_signature"), (6 * 60, "future_signature")]
)
def test_stale_and_future_timestamps_are_rejected(http: Http, shift: float, code: str) -> None:
    _error(http.subscribe(shift=shift), 401, code)
    _nothing_stored()


def test_timestamps_within_five_minutes_are_accepted(http: Http) -> None:
    assert http.subscribe(shift=-4 * 60).status_code == 200
    assert http.subscribe(shift=4 * 60).status_code == 200


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_rejected(http: Http, missing: str) -> None:
    body = json.dumps(deploy_payload()).encode()
    headers = signed_headers(body)
    del headers[missing]
    response = http.client.post("/webhooks/deploy", content=body, headers=headers)
    _error(response, 401, "missing_signature")
    assert missing in response.json()["error"]["message"]
    _nothing_stored()


@pytest.mark.parametrize(
    "signature",
    ["garbage", "v1,not-base64!!", "v2,AAAA", "v1", "v1,"],
)
def test_malformed_signature_header_is_rejected(http: Http, signature: str) -> None:
    body = json.dumps(deploy_payload()).encode()
    headers = signed_headers(body)
    headers["webhook-signature"] = signature
    response = http.client.post("/webhooks/deploy", content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] in {"invalid_signature", "missing_signature"}
    _nothing_stored()


def test_non_numeric_timestamp_is_rejected(http: Http) -> None:
    body = json.dumps(deploy_payload()).encode()
    headers = signed_headers(body)
    headers["webhook-timestamp"] = "yesterday"
    _error(
        http.client.post("/webhooks/deploy", content=body, headers=headers),
        401,
        "invalid_signature",
    )


def test_both_rotated_secrets_verify_and_an_unknown_one_does_not(http: Http) -> None:
    assert http.subscribe(secret=OLD_SECRET).status_code == 200
    assert http.subscribe(secret=OLD_SECRET).json()["applied"] is True
    _error(http.subscribe(secret=generate_webhook_secret()), 401, "invalid_signature")


def test_one_of_several_signatures_may_match(http: Http) -> None:
    body = json.dumps(deploy_payload()).encode()
    headers = signed_headers(body)
    other = signed_headers(body, secret=generate_webhook_secret(), webhook_id=headers["webhook-id"])
    headers["webhook-signature"] = f"{other['webhook-signature']} {headers['webhook-signature']}"
    response = http.client.post("/webhooks/subscription", content=body, headers=headers)
    # The signature verified; the body is a deploy payload, so validation refuses it.
    _error(response, 400, "validation_error")


def test_signature_is_checked_before_the_body_is_parsed(http: Http) -> None:
    # Unsigned garbage gets 401, not a JSON error: nothing looks at it first.
    response = http.client.post(
        "/webhooks/deploy", content=b"{not json", headers={"content-type": "application/json"}
    )
    _error(response, 401, "missing_signature")
    bad = b"\xff\xfe{}"
    headers = signed_headers(b"{}")
    _error(
        http.client.post("/webhooks/deploy", content=bad, headers=headers), 401, "invalid_signature"
    )


def test_overlong_webhook_id_is_rejected(http: Http) -> None:
    _error(http.subscribe(webhook_id="m" * 129), 401, "invalid_webhook_id")
