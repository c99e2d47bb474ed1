"""A deploy's order: what the webhook asked for, checked with Rachel8's rules, in one form.

The deploy webhook takes the Claude credentials in either of two forms (the
OAuth triple or the `.credentials.json` document) and optional
speech-to-text. `check_order` applies Rachel8's own rules
(`core.cloud.rachel8`) before anything is stored, so that a deploy Rachel8
would refuse at start is refused now, and normalises the credentials to the
document the Claude Code CLI reads: the one form stored, compared and
injected. The `DeployOrder` it returns is what the intake seals into the
delivery and carries out later (`core.domain.intake`, `core.domain.carry_out`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import msgspec

from core.cloud.rachel8 import (
    ConfigError,
    check_bot_token,
    check_owner_id,
    check_speech_to_text,
    credentials_from_fields,
    parse_credentials_document,
)
from core.security.redaction import register_secret

OAUTH_FIELD = "claude_oauth"
DOCUMENT_FIELD = "claude_credentials"
STT_FIELD = "speech_to_text"


class DeployOrder(msgspec.Struct, kw_only=True):
    """What a stored deploy asks for, checked (`check_order`) before it was stored.

    `owner_telegram_user_id` and the speech-to-text fields default to None so
    that a deploy stored by the release before this one (its raw request)
    still opens; such a customer gets no owner id until a new deploy gives it.
    """

    customer_id: str
    email: str
    telegram_bot_token: str
    #: The `.credentials.json` document (`ClaudeCredentials.document()`).
    claude_credentials: str
    owner_telegram_user_id: int | None = None
    stt_provider: str | None = None
    stt_api_key: str | None = None
    location: str | None = None
    server_type: str | None = None

    def secrets(self) -> list[str]:
        """Every secret value the order holds, each OAuth token on its own."""
        found = [self.telegram_bot_token, self.claude_credentials, self.stt_api_key or ""]
        with contextlib.suppress(ConfigError):  # a stored order of the release before
            credentials = parse_credentials_document(self.claude_credentials, now_ms=None)
            found += [credentials.access_token, credentials.refresh_token]
        return [s for s in found if s]


def register_order_secrets(order: DeployOrder) -> None:
    """Register the order's secrets for redaction (wherever it is held in clear)."""
    for secret in order.secrets():
        register_secret(secret)


@dataclass(frozen=True)
class OAuthTriple:
    """The structured form of the Claude credentials, as the webhook received it."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at_ms: int
    scopes: list[str] | None = None


@dataclass(frozen=True)
class DeployInput:
    """A deploy webhook's fields, before Rachel8's rules were applied."""

    customer_id: str
    email: str
    telegram_bot_token: str = field(repr=False)
    owner_telegram_user_id: int
    claude_oauth: OAuthTriple | None = None
    claude_credentials: str | None = field(default=None, repr=False)
    #: (provider, API key), or None for no speech-to-text.
    speech_to_text: tuple[str, str] | None = field(default=None, repr=False)
    location: str | None = None
    server_type: str | None = None


def check_order(given: DeployInput, *, now_ms: int) -> DeployOrder:
    """The order, if Rachel8 would start with it; its secrets registered for redaction.

    Args:
        given: the webhook's fields.
        now_ms: now, ms since the epoch (an access token expiring before is refused).

    Raises:
        ConfigError: names the field and what is wrong with it (no value is echoed).
    """
    for secret in (given.telegram_bot_token, given.claude_credentials):
        register_secret(secret)
    if given.claude_oauth is not None:
        register_secret(given.claude_oauth.access_token)
        register_secret(given.claude_oauth.refresh_token)
    if given.speech_to_text is not None:
        register_secret(given.speech_to_text[1])
    token = check_bot_token(given.telegram_bot_token)
    owner = check_owner_id(given.owner_telegram_user_id)
    oauth, document = given.claude_oauth, given.claude_credentials
    if (oauth is None) == (document is None):
        raise ConfigError(
            DOCUMENT_FIELD,
            f"give the Claude credentials exactly once: either {OAUTH_FIELD} (access_token, "
            f"refresh_token, expires_at) or {DOCUMENT_FIELD} (the .credentials.json document)",
            code="credentials_form",
        )
    if oauth is not None:
        credentials = credentials_from_fields(
            oauth.access_token,
            oauth.refresh_token,
            oauth.expires_at_ms,
            oauth.scopes,
            now_ms=now_ms,
            field_name=OAUTH_FIELD,
        )
    else:
        assert document is not None  # one of the two, checked above
        credentials = parse_credentials_document(document, now_ms=now_ms)
    speech = None
    if given.speech_to_text is not None:
        provider, key = given.speech_to_text
        speech = check_speech_to_text(
            provider, key, field_names=(f"{STT_FIELD}.provider", f"{STT_FIELD}.api_key")
        )
    return DeployOrder(
        customer_id=given.customer_id,
        email=given.email,
        telegram_bot_token=token,
        claude_credentials=credentials.document(),
        owner_telegram_user_id=owner,
        stt_provider=speech.provider if speech else None,
        stt_api_key=speech.api_key if speech else None,
        location=given.location,
        server_type=given.server_type,
    )
