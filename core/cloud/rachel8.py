"""Rachel8's configuration as the control plane writes it: the rules and the two files.

Rachel8 validates its `.env` at start and exits 1 on any invalid value
(`../shared/rachel8/README.md`), after the customer has paid and a server
was built. So the deploy webhook checks the same rules before anything is
stored, and the injection writes only values that passed them:

- `TELEGRAM_BOT_TOKEN`: `^\\d{8,}:[A-Za-z0-9_-]{35,}$`;
- `OWNER_TELEGRAM_USER_ID`: a positive integer;
- `AI_PROVIDER=claudecode` (Rachel8's default is `codex`);
- the Claude credentials: `~/.claude/.credentials.json`, `{"claudeAiOauth":
  {"accessToken", "refreshToken", "expiresAt" (ms since the epoch), "scopes"}}`.

The simulator's Rachel8 enforces these with code of its own (`sim/`), so a
rule this module gets wrong fails a test instead of a customer's bot.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.cloud import vps_contract as vps
from core.errors import RachelError

BOT_TOKEN_RE = re.compile(r"^\d{8,}:[A-Za-z0-9_-]{35,}$")
#: The largest Telegram user id is 2**52 - 1 (Bot API: "at most 52 significant bits").
MAX_TELEGRAM_USER_ID = 2**52 - 1
STT_PROVIDERS = ("groq", "openai")
#: `.env` values are written unquoted; each value we write matches this, so that
#: Bun's dotenv and a shell read the same text (webhook input is validated to it).
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_./:@+=-]*$")
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_\-.~+/=]{8,4096}$")
DEFAULT_SCOPES = ("user:inference", "user:profile")


class ConfigError(RachelError):
    """A value Rachel8 would refuse at start. `field` names it, `code` says how."""

    code = "invalid_rachel8_config"

    def __init__(self, field_name: str, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{field_name}: {message}", code=code)
        self.field = field_name


def check_bot_token(token: str, field_name: str = "telegram_bot_token") -> str:
    """The token, if Rachel8 would accept it.

    Raises:
        ConfigError: it does not match Rachel8's pattern.
    """
    if not BOT_TOKEN_RE.fullmatch(token):
        raise ConfigError(
            field_name,
            "not a Telegram bot token (digits, a colon, then at least 35 letters, digits, _ or -)",
        )
    return token


def check_owner_id(value: int, field_name: str = "owner_telegram_user_id") -> int:
    """The owner's Telegram user id, if Rachel8 would accept it.

    Raises:
        ConfigError: not a positive integer within Telegram's range.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(field_name, "must be a positive integer (a Telegram user id)")
    if value > MAX_TELEGRAM_USER_ID:
        raise ConfigError(field_name, "is larger than any Telegram user id")
    return value


@dataclass(frozen=True)
class ClaudeCredentials:
    """The Claude Code CLI's OAuth credentials.

    Attributes:
        access_token: `sk-ant-oat...`, short-lived; the CLI refreshes it.
        refresh_token: `sk-ant-ort...`; the CLI may rotate it.
        expires_at_ms: when the access token expires, ms since the epoch.
        scopes: the OAuth scopes granted.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at_ms: int
    scopes: tuple[str, ...] = DEFAULT_SCOPES

    def document(self) -> str:
        """`.credentials.json` as the CLI reads it."""
        return json.dumps(
            {
                "claudeAiOauth": {
                    "accessToken": self.access_token,
                    "refreshToken": self.refresh_token,
                    "expiresAt": self.expires_at_ms,
                    "scopes": list(self.scopes),
                }
            },
            separators=(",", ":"),
        )

    def newer_than(self, other: ClaudeCredentials) -> bool:
        """Whether these expire later: the CLI's refresh moves the expiry forward."""
        return self.expires_at_ms > other.expires_at_ms


def _token(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not _TOKEN_SHAPE.fullmatch(value):
        raise ConfigError(field_name, "must be an OAuth token (8 to 4096 URL-safe characters)")
    return value


def credentials_from_fields(
    access_token: Any,
    refresh_token: Any,
    expires_at_ms: Any,
    scopes: Any = None,
    *,
    now_ms: int,
    field_name: str = "claude_credentials",
) -> ClaudeCredentials:
    """Credentials from their parts, checked.

    Raises:
        ConfigError: a part is missing or malformed, or the access token's expiry is past.
    """
    access = _token(access_token, f"{field_name}.access_token")
    refresh = _token(refresh_token, f"{field_name}.refresh_token")
    if isinstance(expires_at_ms, bool) or not isinstance(expires_at_ms, int):
        raise ConfigError(f"{field_name}.expires_at", "must be an integer: ms since the epoch")
    if expires_at_ms <= now_ms:
        raise ConfigError(
            f"{field_name}.expires_at", "is in the past: sign in to Claude again", code="expired"
        )
    if scopes is None:
        granted = DEFAULT_SCOPES
    elif isinstance(scopes, list) and all(isinstance(s, str) and s for s in scopes):
        granted = tuple(scopes)
    else:
        raise ConfigError(f"{field_name}.scopes", "must be a list of scope names")
    return ClaudeCredentials(access, refresh, expires_at_ms, granted)


def parse_credentials_document(
    text: str, *, now_ms: int | None, field_name: str = "claude_credentials"
) -> ClaudeCredentials:
    """Credentials from a `.credentials.json` document.

    `now_ms` None skips the expiry check: a VPS's own copy may hold an expired
    access token that its CLI will refresh.

    Raises:
        ConfigError: not JSON, or not the shape the CLI writes.
    """
    try:
        document = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(field_name, "is not a JSON document") from exc
    oauth = document.get("claudeAiOauth") if isinstance(document, Mapping) else None
    if not isinstance(oauth, Mapping):
        raise ConfigError(field_name, 'has no "claudeAiOauth" object')
    return credentials_from_fields(
        oauth.get("accessToken"),
        oauth.get("refreshToken"),
        oauth.get("expiresAt"),
        oauth.get("scopes"),
        now_ms=-1 if now_ms is None else now_ms,
        field_name=field_name,
    )


@dataclass(frozen=True)
class SpeechToText:
    """Optional speech-to-text for voice messages.

    Attributes:
        provider: `groq` or `openai`.
        api_key: that provider's key.
    """

    provider: str
    api_key: str = field(repr=False)


def check_speech_to_text(
    provider: str, api_key: str, *, field_names: tuple[str, str] = ("stt_provider", "stt_api_key")
) -> SpeechToText:
    """Speech-to-text settings, checked.

    Args:
        provider: `groq` or `openai`.
        api_key: that provider's key.
        field_names: what an error calls the provider and the key (the webhook's names).

    Raises:
        ConfigError: an unknown provider, or a key that is empty or not plain text.
    """
    provider_field, key_field = field_names
    if provider not in STT_PROVIDERS:
        raise ConfigError(provider_field, f"must be one of {', '.join(STT_PROVIDERS)}")
    if not (8 <= len(api_key) <= 512) or not _PLAIN_VALUE.fullmatch(api_key):
        raise ConfigError(key_field, "must be 8 to 512 letters, digits or _-.:/+=@")
    return SpeechToText(provider, api_key)


@dataclass(frozen=True)
class Rachel8Config:
    """Everything the injection writes for one customer."""

    bot_token: str = field(repr=False)
    owner_id: int
    credentials: ClaudeCredentials
    speech: SpeechToText | None = None

    def env(self, layout: vps.Layout) -> str:
        """Rachel8's `.env` text for this layout.

        Raises:
            ConfigError: a value would need quoting (the webhook refuses such input).
        """
        values = {
            vps.ENV_BOT_TOKEN: check_bot_token(self.bot_token),
            vps.ENV_OWNER_ID: str(check_owner_id(self.owner_id)),
            vps.ENV_SHARED_FOLDER: layout.shared_dir,
            vps.ENV_AI_PROVIDER: "claudecode",
            vps.ENV_NODE_ENV: "production",
            vps.ENV_LOG_LEVEL: "info",
        }
        if self.speech is not None:
            values[vps.ENV_STT_PROVIDER] = self.speech.provider
            key = vps.ENV_GROQ_API_KEY if self.speech.provider == "groq" else vps.ENV_OPENAI_API_KEY
            values[key] = self.speech.api_key
        for name, value in values.items():
            if not _PLAIN_VALUE.fullmatch(value):
                raise ConfigError(name, "holds characters .env cannot carry unquoted")
        return "".join(f"{name}={value}\n" for name, value in values.items())
