"""POST /webhooks/deploy with Rachel8's values: what Rachel8 would refuse is refused now.

Each bad input gets a 4xx JSON error naming the field and leaves nothing
behind (no delivery, no customer change, no job); a valid deploy stores the
owner id, the credentials as the `.credentials.json` document and the
speech-to-text settings.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from core.store.models import Customer, Server, WebhookDelivery
from core.store.vault import reveal
from tests import factories
from tests.webhook.conftest import (
    ACCESS_TOKEN,
    CLAUDE,
    CLAUDE_OAUTH,
    OWNER_ID,
    REFRESH_TOKEN,
    Http,
    Intake,
    active,
    deploy_payload,
)
from webhook.context import WebContext

PAST_MS = int(time.time() * 1000) - 60_000
DOCUMENT = {
    "claudeAiOauth": {
        "accessToken": ACCESS_TOKEN,
        "refreshToken": REFRESH_TOKEN,
        "expiresAt": factories.EXPIRES_AT_MS,
        "scopes": ["user:inference", "user:profile"],
    }
}


def _document(**oauth: Any) -> str:
    return json.dumps({"claudeAiOauth": {**DOCUMENT["claudeAiOauth"], **oauth}})


BAD = [
    # (what, payload changes, status, code, the field named)
    ("no owner id", {"owner_telegram_user_id": None}, 400, "validation_error", None),
    ("owner id 0", {"owner_telegram_user_id": 0}, 422, "invalid_rachel8_config", None),
    ("negative owner id", {"owner_telegram_user_id": -5}, 422, "invalid_rachel8_config", None),
    ("huge owner id", {"owner_telegram_user_id": 2**60}, 422, "invalid_rachel8_config", None),
    ("owner id not a number", {"owner_telegram_user_id": "ada"}, 400, "validation_error", None),
    ("short token", {"telegram_bot_token": "123:abc"}, 422, "invalid_rachel8_config", None),
    (
        "token with 7 digits",
        {"telegram_bot_token": "1234567:" + "A" * 35},
        422,
        "invalid_rachel8_config",
        "telegram_bot_token",
    ),
    (
        "token with a space",
        {"telegram_bot_token": "12345678:" + "A" * 34 + " "},
        422,
        "invalid_rachel8_config",
        "telegram_bot_token",
    ),
    (
        "credentials not JSON",
        {"claude_oauth": None, "claude_credentials": "not json"},
        422,
        "invalid_rachel8_config",
        "claude_credentials",
    ),
    (
        "credentials without claudeAiOauth",
        {"claude_oauth": None, "claude_credentials": '{"refresh_token": "x"}'},
        422,
        "invalid_rachel8_config",
        "claude_credentials",
    ),
    (
        "credentials without a refresh token",
        {"claude_oauth": None, "claude_credentials": _document(refreshToken=None)},
        422,
        "invalid_rachel8_config",
        "claude_credentials.refresh_token",
    ),
    (
        "credentials with an expiry in text",
        {"claude_oauth": None, "claude_credentials": _document(expiresAt="tomorrow")},
        422,
        "invalid_rachel8_config",
        "claude_credentials.expires_at",
    ),
    (
        "document expired",
        {"claude_oauth": None, "claude_credentials": _document(expiresAt=PAST_MS)},
        422,
        "expired",
        "claude_credentials.expires_at",
    ),
    (
        "triple expired",
        {"claude_oauth": {**CLAUDE_OAUTH, "expires_at": PAST_MS}},
        422,
        "expired",
        "claude_oauth.expires_at",
    ),
    (
        "triple with a malformed token",
        {"claude_oauth": {**CLAUDE_OAUTH, "access_token": "has spaces in it"}},
        422,
        "invalid_rachel8_config",
        "claude_oauth.access_token",
    ),
    (
        "triple without its refresh token",
        {"claude_oauth": {"access_token": ACCESS_TOKEN, "expires_at": factories.EXPIRES_AT_MS}},
        400,
        "validation_error",
        "refresh_token",
    ),
    (
        "both credentials forms",
        {"claude_credentials": _document()},
        422,
        "credentials_form",
        "claude_credentials",
    ),
    ("neither credentials form", {"claude_oauth": None}, 422, "credentials_form", None),
    (
        "unknown STT provider",
        {"speech_to_text": {"provider": "whisper", "api_key": "gsk_0123456789"}},
        400,
        "validation_error",
        None,
    ),
    (
        "STT key too short",
        {"speech_to_text": {"provider": "groq", "api_key": "short"}},
        422,
        "invalid_rachel8_config",
        "speech_to_text.api_key",
    ),
    (
        "STT key .env cannot carry",
        {"speech_to_text": {"provider": "openai", "api_key": "sk-with a space"}},
        422,
        "invalid_rachel8_config",
        "speech_to_text.api_key",
    ),
    ("STT without a key", {"speech_to_text": {"provider": "groq"}}, 400, "validation_error", None),
]
#: Where a field is not given above, the error names the field of the payload change.
_NAMED = {
    "owner_telegram_user_id": "owner_telegram_user_id",
    "telegram_bot_token": "telegram_bot_token",
    "claude_oauth": "claude_credentials",
    "speech_to_text": "speech_to_text",
}


def _snapshot(redis_client: redis.Redis) -> tuple[Any, ...]:
    return (
        list(Customer.select().tuples()),
        WebhookDelivery.select().count(),
        Server.select().count(),
        sorted(redis_client.keys("*")),
    )


@pytest.mark.parametrize(
    ("changes", "status", "code", "field"),
    [pytest.param(c, s, code, f, id=what) for what, c, s, code, f in BAD],
)
def test_what_rachel8_would_refuse_is_refused_naming_the_field_and_nothing_is_stored(
    tc: Http,
    redis_client: redis.Redis,
    changes: dict[str, Any],
    status: int,
    code: str,
    field: str | None,
) -> None:
    factories.paying_customer(tc_ring(tc), external_id="cus_web_1")
    before = _snapshot(redis_client)
    response = tc.deploy(deploy_payload(**changes))
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    named = field or _NAMED[next(iter(changes))]
    if status == 422:
        assert error["field"] == named
    else:  # the schema's own errors name the field in their details
        assert any(named in detail for detail in error["details"]), error
    assert "planted" not in response.text
    assert _snapshot(redis_client) == before


def tc_ring(tc: Http) -> Any:
    return tc.client.app.state["ctx"].keyring  # type: ignore[union-attr]


def test_the_oauth_triple_is_stored_as_the_credentials_document_with_the_owner_and_stt(
    http: Http, ctx: WebContext, intake: Intake
) -> None:
    active()
    stt = {"provider": "groq", "api_key": "gsk_planted-stt-key-0123"}
    assert http.deploy(deploy_payload(speech_to_text=stt)).status_code == 202
    assert intake.run() == 1
    customer = Customer.get(Customer.external_id == "cus_web_1")
    assert customer.owner_telegram_user_id == OWNER_ID
    assert reveal(ctx.keyring, customer, "claude_credentials") == CLAUDE
    assert json.loads(CLAUDE) == DOCUMENT
    assert (customer.stt_provider, reveal(ctx.keyring, customer, "stt_api_key")) == (
        "groq",
        stt["api_key"],
    )
    raw = str(Customer.select(Customer.stt_api_key).tuples().first())
    assert "planted" not in raw


def test_the_credentials_document_is_stored_in_the_one_form(
    tc: Http, ctx: WebContext, intake: Intake
) -> None:
    active()
    spaced = json.dumps(
        {"claudeAiOauth": {**DOCUMENT["claudeAiOauth"], "scopes": None}}, indent=4, sort_keys=True
    )
    payload = deploy_payload(claude_oauth=None, claude_credentials=spaced)
    assert tc.deploy(payload).status_code == 202
    intake.run()
    customer = Customer.get(Customer.external_id == "cus_web_1")
    assert reveal(ctx.keyring, customer, "claude_credentials") == CLAUDE
    assert customer.stt_provider is None and customer.stt_api_key is None
