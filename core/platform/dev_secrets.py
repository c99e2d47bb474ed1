"""Development secrets: master key ring, webhook secret and API key in the data dir.

Production sets `RACHEL_MASTER_KEYS`, `RACHEL_WEBHOOK_SECRETS` and
`RACHEL_API_KEYS` (settings refuse to load without them against the real
cloud). With the embedded defaults, one of each is generated on first use and
kept in the data directory (mode 0600), so that every local process (and
`rachel-cloud webhook-sign`) agrees on them.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from core.errors import SettingsError
from core.platform.settings import Settings
from core.security.crypto import generate_key_entry
from core.security.redaction import register_secret
from core.security.signing import WEBHOOK_SECRET_PREFIX, check_webhook_secret

MASTER_KEYS_FILE = "master.keys"
WEBHOOK_SECRET_FILE = "webhook.secret"  # noqa: S105 - a file name
API_KEY_FILE = "api.key"
#: Standard Webhooks secrets are 24 to 64 random bytes; we generate 32.
WEBHOOK_SECRET_BYTES = 32
MIN_API_KEY_LENGTH = 16


def generate_webhook_secret() -> str:
    """A new Standard Webhooks secret, `whsec_<base64 of 32 random bytes>`."""
    raw = secrets.token_bytes(WEBHOOK_SECRET_BYTES)
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def generate_api_key() -> str:
    """A new API key for the status API."""
    return "rk_" + secrets.token_urlsafe(32)


def _development_value(data_dir: Path, filename: str, factory: Callable[[], str]) -> str:
    path = data_dir / filename
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        # O_EXCL: when two processes race to create it, exactly one value wins.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(factory() + "\n")
    value = path.read_text().strip()
    if not value:
        raise SettingsError("RACHEL_DATA_DIR", f"{path} is empty; delete it to regenerate")
    return value


def development_key_entries(data_dir: Path) -> list[str]:
    """The development master key ring (one `ID:KEY` entry), created on first use."""
    return [_development_value(data_dir, MASTER_KEYS_FILE, generate_key_entry)]


def webhook_secrets(settings: Settings) -> tuple[str, ...]:
    """The webhook signing secrets, oldest first (the last one signs).

    Raises:
        SettingsError: a configured secret is malformed.
    """
    if settings.webhook_secrets:
        values = settings.webhook_secrets
    else:
        values = (
            _development_value(settings.data_dir, WEBHOOK_SECRET_FILE, generate_webhook_secret),
        )
    for value in values:
        check_webhook_secret(value)
        register_secret(value)
        register_secret(value.removeprefix(WEBHOOK_SECRET_PREFIX))
    return values


def api_keys(settings: Settings) -> tuple[str, ...]:
    """The API keys that open the status API.

    Raises:
        SettingsError: a configured key is too short to be a secret.
    """
    if settings.api_keys:
        values = settings.api_keys
    else:
        values = (_development_value(settings.data_dir, API_KEY_FILE, generate_api_key),)
    for value in values:
        if len(value) < MIN_API_KEY_LENGTH:
            raise SettingsError(
                "RACHEL_API_KEYS", f"each key must be at least {MIN_API_KEY_LENGTH} characters"
            )
        register_secret(value)
    return values
