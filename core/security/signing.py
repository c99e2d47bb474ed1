"""Standard Webhooks signatures: verifying what the dashboard sends, signing for tests.

Verification runs on the raw body bytes, before anything parses them, with
the `standardwebhooks` library: `webhook-id`, `webhook-timestamp` (within
five minutes either way) and `webhook-signature` (`v1,<base64 HMAC-SHA256>`,
several space-separated signatures allowed). Any configured secret verifies,
so secrets rotate without a flag day: add the new one, move the sender to it,
remove the old one. Whatever fails, the caller learns which check failed and
nothing about the secrets.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.errors import RachelError, SettingsError

HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
#: The signature's validity window either side of now (the library's fixed tolerance).
TOLERANCE_SECONDS = 5 * 60
#: `webhook-id` is the idempotency key, stored in a 128-character column.
_WEBHOOK_ID = re.compile(r"^[A-Za-z0-9_.:@=+/-]{1,128}$")


WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix


def check_webhook_secret(secret: str) -> bytes:
    """Decode a `whsec_...` secret to its key bytes.

    Raises:
        SettingsError: the secret is not `whsec_` followed by base64 of at least 16 bytes.
    """
    body = secret.removeprefix(WEBHOOK_SECRET_PREFIX)
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SettingsError(
            "RACHEL_WEBHOOK_SECRETS", "each secret must be whsec_ followed by base64"
        ) from None
    if len(raw) < 16:
        raise SettingsError(
            "RACHEL_WEBHOOK_SECRETS", "each secret must hold at least 16 bytes of key"
        )
    return raw


class SignatureRejected(RachelError):
    """A webhook whose signature headers are missing, stale, or do not verify.

    An authentication problem, whatever its `code` says failed.
    """

    code = "invalid_signature"


@dataclass(frozen=True)
class Verified:
    """What a verified delivery told us about itself."""

    webhook_id: str
    timestamp: datetime


class WebhookVerifier:
    """Verifies Standard Webhooks deliveries against a set of secrets."""

    def __init__(self, secrets_: Iterable[str]) -> None:
        """Build a verifier.

        Raises:
            SettingsError: a secret is malformed, or there is none.
        """
        self._hooks: list[Webhook] = []
        for secret in secrets_:
            check_webhook_secret(secret)
            self._hooks.append(Webhook(secret))
        if not self._hooks:
            raise SettingsError("RACHEL_WEBHOOK_SECRETS", "no webhook secret is configured")

    def verify(self, body: bytes, headers: Mapping[str, str]) -> Verified:
        """Check the signature headers against `body` (raw bytes, unparsed).

        Raises:
            SignatureRejected: code `missing_signature`, `stale_signature`,
                `future_signature`, `invalid_webhook_id` or `invalid_signature`.
        """
        lowered = {k.lower(): v for k, v in headers.items() if k.lower() in HEADERS}
        missing = [name for name in HEADERS if not lowered.get(name)]
        if missing:
            raise SignatureRejected(
                f"missing signature header(s): {', '.join(missing)}", code="missing_signature"
            )
        webhook_id = lowered["webhook-id"]
        if not _WEBHOOK_ID.match(webhook_id):
            raise SignatureRejected(
                "webhook-id must be 1 to 128 characters of letters, digits and _.:@=+/-",
                code="invalid_webhook_id",
            )
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SignatureRejected("the body is not UTF-8 text") from None
        last: WebhookVerificationError | None = None
        for hook in self._hooks:
            try:
                hook.verify(text, lowered, json_parse=False)
            except WebhookVerificationError as exc:
                last = exc
                if str(exc) != "No matching signature found":
                    break  # timestamp or header problems are the same for every secret
            except (ValueError, binascii.Error):
                # The library unpacks `v1,<sig>` and base64-decodes without guarding.
                raise SignatureRejected("webhook-signature is malformed") from None
            else:
                stamp = datetime.fromtimestamp(float(lowered["webhook-timestamp"]), tz=UTC)
                return Verified(webhook_id, stamp.replace(tzinfo=None))
        raise _translate(last)


def _translate(exc: WebhookVerificationError | None) -> SignatureRejected:
    reason = str(exc) if exc is not None else ""
    if reason == "Message timestamp too old":
        return SignatureRejected(
            f"webhook-timestamp is more than {TOLERANCE_SECONDS // 60} minutes old",
            code="stale_signature",
        )
    if reason == "Message timestamp too new":
        return SignatureRejected(
            f"webhook-timestamp is more than {TOLERANCE_SECONDS // 60} minutes in the future",
            code="future_signature",
        )
    if reason == "Invalid Signature Headers":
        return SignatureRejected("webhook-timestamp is not a Unix timestamp")
    return SignatureRejected("no signature matches the body with any configured secret")


def new_webhook_id() -> str:
    """A fresh delivery id, `msg_<random>`."""
    return "msg_" + secrets.token_urlsafe(18)


def sign(
    secret: str, body: bytes, *, webhook_id: str | None = None, timestamp: datetime | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers that sign `body` with `secret`.

    Raises:
        SettingsError: the secret is malformed.
        UnicodeDecodeError: the body is not UTF-8 text (Standard Webhooks signs text).
    """
    check_webhook_secret(secret)
    when = timestamp or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    msg_id = webhook_id or new_webhook_id()
    signature = Webhook(secret).sign(msg_id, when, body.decode("utf-8"))
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
    }
