"""`customers.rachel8_config` (what the injection writes) and refusals of values never given."""

from __future__ import annotations

import json

import peewee
import pytest
import redis

from core.cloud import vps_contract as vps
from core.domain.customers import IncompleteConfig, missing_values, rachel8_config
from core.errors import CryptoError
from core.platform.settings import Settings
from core.security.crypto import KeyRing, generate_key_entry
from core.security.redaction import redact
from core.store.models import Server
from core.store.vault import seal
from jobs import operator
from jobs.operator import OperatorError
from tests import factories

RING = KeyRing([generate_key_entry()])


def test_a_customer_s_config_is_revealed_checked_and_makes_rachel8_s_env(
    db: peewee.Database,
) -> None:
    owner = factories.paying_customer(RING, external_id="cus_full", stt_provider="openai")
    seal(RING, owner, "stt_api_key", "sk-planted-stt-0123456789")
    owner.save()
    config = rachel8_config(RING, owner)
    assert config.owner_id == factories.OWNER_ID
    assert config.bot_token == factories.bot_token(f"{owner.id:06d}")
    assert config.credentials.expires_at_ms == factories.EXPIRES_AT_MS
    assert config.speech is not None and config.speech.provider == "openai"
    env = config.env(vps.Layout())
    assert f"OWNER_TELEGRAM_USER_ID={factories.OWNER_ID}\n" in env
    assert "OPENAI_API_KEY=sk-planted-stt-0123456789\n" in env
    assert "AI_PROVIDER=claudecode\n" in env
    # Each OAuth token is registered for redaction on its own, not only the document.
    assert config.credentials.access_token not in redact(f"x {config.credentials.access_token} y")
    assert config.credentials.refresh_token not in redact(config.credentials.refresh_token)


@pytest.mark.parametrize(
    ("blank", "code", "field"),
    [
        ("owner_telegram_user_id", "missing_owner_id", "owner_telegram_user_id"),
        ("telegram_bot_token", "missing_bot_token", "telegram_bot_token"),
        ("claude_credentials", "missing_claude_credentials", "claude_credentials"),
    ],
)
def test_a_value_never_given_is_a_clear_refusal_naming_it(
    db: peewee.Database, blank: str, code: str, field: str
) -> None:
    owner = factories.paying_customer(RING, external_id="cus_old")
    setattr(owner, blank, None)
    owner.save()
    assert missing_values(owner) == [blank]
    with pytest.raises(IncompleteConfig) as info:
        rachel8_config(RING, owner)
    assert (info.value.code, info.value.field, info.value.transient) == (code, field, False)
    assert "cus_old" in str(info.value) and blank in str(info.value)
    assert "deploy webhook" in str(info.value)


def test_a_customer_from_before_this_release_names_every_missing_value(
    db: peewee.Database,
) -> None:
    old = factories.customer(external_id="cus_2025")  # no secrets, no owner id at all
    assert missing_values(old) == [
        "owner_telegram_user_id",
        "telegram_bot_token",
        "claude_credentials",
    ]
    with pytest.raises(IncompleteConfig, match="owner_telegram_user_id, telegram_bot_token"):
        rachel8_config(RING, old)


@pytest.mark.parametrize(
    ("column", "stored", "field"),
    [
        ("claude_credentials", json.dumps({"refresh_token": "planted-old"}), "claude_credentials"),
        ("telegram_bot_token", "42:planted-old-style", "telegram_bot_token"),
    ],
)
def test_a_stored_value_rachel8_would_refuse_is_refused_before_it_reaches_the_vps(
    db: peewee.Database, column: str, stored: str, field: str
) -> None:
    owner = factories.paying_customer(RING, external_id="cus_legacy")
    seal(RING, owner, column, stored)
    owner.save()
    with pytest.raises(IncompleteConfig) as info:
        rachel8_config(RING, owner)
    assert (info.value.code, info.value.field) == ("invalid_stored_config", field)
    assert "planted" not in str(info.value)


def test_an_expired_access_token_is_still_injected(db: peewee.Database) -> None:
    owner = factories.paying_customer(RING, external_id="cus_expired")
    seal(RING, owner, "claude_credentials", factories.claude_document("old", expires_at_ms=1000))
    owner.save()
    assert rachel8_config(RING, owner).credentials.expires_at_ms == 1000  # the VPS refreshes it


def test_secrets_of_another_key_ring_do_not_open(db: peewee.Database) -> None:
    owner = factories.paying_customer(RING, external_id="cus_keys")
    with pytest.raises(CryptoError):
        rachel8_config(KeyRing([generate_key_entry()]), owner)


def test_operator_actions_refuse_a_customer_rachel8_cannot_run_for(
    db: peewee.Database, redis_client: redis.Redis, settings: Settings
) -> None:
    old = factories.customer(external_id="cus_before")
    factories.subscription(old)
    with pytest.raises(OperatorError, match="cus_before never gave owner_telegram_user_id"):
        operator.deploy(redis_client, settings, "cus_before", "operator:test")
    assert Server.select().count() == 0
    ready = factories.server(old, status="ready")
    with pytest.raises(OperatorError, match="deliver a deploy webhook"):
        operator.reinject(redis_client, ready.id, "operator:test")
    Server.update(status="failed", failed_phase="injecting_secrets").where(
        Server.id == ready.id
    ).execute()
    with pytest.raises(OperatorError, match="owner_telegram_user_id"):
        operator.retry(redis_client, settings, ready.id, "operator:test")
    assert Server.get_by_id(ready.id).status == "failed"
    assert redis_client.keys("rq:*") == []
