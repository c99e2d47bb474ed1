"""Rachel8's configuration rules, and the files the injection writes from them."""

from __future__ import annotations

import json

import pytest

from core.cloud import vps_contract as vps
from core.cloud.rachel8 import (
    ClaudeCredentials,
    ConfigError,
    Rachel8Config,
    check_bot_token,
    check_owner_id,
    check_speech_to_text,
    credentials_from_fields,
    parse_credentials_document,
)

TOKEN = "123456789:" + "A" * 35
NOW_MS = 1_800_000_000_000


def creds(expires: int = NOW_MS + 3_600_000) -> ClaudeCredentials:
    return credentials_from_fields(
        "sk-ant-oat01-abcdefgh", "sk-ant-ort01-abcdefgh", expires, now_ms=NOW_MS
    )


@pytest.mark.parametrize(
    "token",
    [
        "1234567:" + "A" * 35,
        "123456789:" + "A" * 34,
        "123456789" + "A" * 36,
        "12345678:" + "A" * 34 + "!",
    ],
)
def test_bot_tokens_rachel8_refuses(token: str) -> None:
    with pytest.raises(ConfigError, match="telegram_bot_token"):
        check_bot_token(token)


def test_bot_token_rachel8_accepts() -> None:
    assert check_bot_token("12345678:" + "a_-Z9" * 7) == "12345678:" + "a_-Z9" * 7


@pytest.mark.parametrize("value", [0, -5, True, 2**53])
def test_owner_ids_refused(value: int) -> None:
    with pytest.raises(ConfigError, match="owner_telegram_user_id"):
        check_owner_id(value)


def test_credentials_round_trip_through_the_document() -> None:
    original = creds()
    parsed = parse_credentials_document(original.document(), now_ms=NOW_MS)
    assert parsed == original
    assert json.loads(original.document())["claudeAiOauth"]["expiresAt"] == NOW_MS + 3_600_000


def test_expired_credentials_are_refused_but_a_vps_copy_is_read() -> None:
    old = creds(expires=NOW_MS + 1).document()
    with pytest.raises(ConfigError, match="in the past") as caught:
        parse_credentials_document(old, now_ms=NOW_MS + 2)
    assert caught.value.code == "expired"
    assert parse_credentials_document(old, now_ms=None).expires_at_ms == NOW_MS + 1


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ("not json", "claude_credentials"),
        ("[]", "claude_credentials"),
        ('{"claudeAiOauth": {"accessToken": "sk-ant-oat01-abcdefgh"}}', "refresh_token"),
        (
            '{"claudeAiOauth": {"accessToken": "a b", "refreshToken": "sk-ant-ort01-x1234567",'
            ' "expiresAt": 1}}',
            "access_token",
        ),
        (
            '{"claudeAiOauth": {"accessToken": "sk-ant-oat01-abcdefgh", "refreshToken":'
            ' "sk-ant-ort01-abcdefgh", "expiresAt": "soon"}}',
            "expires_at",
        ),
    ],
)
def test_malformed_documents_name_the_field(document: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        parse_credentials_document(document, now_ms=0)


def test_newer_is_the_later_expiry() -> None:
    assert creds(NOW_MS + 10).newer_than(creds(NOW_MS + 5))
    assert not creds(NOW_MS + 5).newer_than(creds(NOW_MS + 5))


def test_env_holds_what_rachel8_requires() -> None:
    layout = vps.Layout("rachel")
    text = Rachel8Config(TOKEN, 42, creds(), check_speech_to_text("groq", "gsk_12345678")).env(
        layout
    )
    lines = dict(line.split("=", 1) for line in text.splitlines())
    assert lines == {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "OWNER_TELEGRAM_USER_ID": "42",
        "SHARED_FOLDER_PATH": "/home/rachel/shared",
        "AI_PROVIDER": "claudecode",
        "NODE_ENV": "production",
        "LOG_LEVEL": "info",
        "STT_PROVIDER": "groq",
        "GROQ_API_KEY": "gsk_12345678",
    }


def test_speech_to_text_is_checked() -> None:
    with pytest.raises(ConfigError, match="stt_provider"):
        check_speech_to_text("whisper", "k" * 10)
    with pytest.raises(ConfigError, match="stt_api_key"):
        check_speech_to_text("openai", "has space inside")
