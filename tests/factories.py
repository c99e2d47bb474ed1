"""Test data builders (real rows in the real test database)."""

from __future__ import annotations

import itertools
import zlib
from typing import TYPE_CHECKING, Any

from core.store.models import Customer, Server, Subscription

if TYPE_CHECKING:
    from core.security.crypto import KeyRing

_seq = itertools.count(1)


def customer(**fields: object) -> Customer:
    n = next(_seq)
    values: dict[str, object] = {"external_id": f"cus_{n:05d}", "email": f"c{n}@example.com"}
    values.update(fields)
    return Customer.create(**values)


def subscription(owner: Customer, status: str = "active", **fields: object) -> Subscription:
    return Subscription.create(customer=owner, status=status, **fields)


def server(owner: Customer | None = None, **fields: object) -> Server:
    values: dict[str, object] = {
        "customer": owner or customer(),
        "location": "fsn1",
        "server_type": "cx23",
        "image": "debian-12",
    }
    values.update(fields)
    return Server.create(**values)


#: Far in the future (2100-01-01), in ms since the epoch: the credentials' expiry in tests.
EXPIRES_AT_MS = 4_102_444_800_000
OWNER_ID = 424242424


def bot_token(tag: int | str) -> str:
    """A bot token Rachel8 accepts (`^\\d{8,}:[A-Za-z0-9_-]{35,}$`), planted: unique per tag."""
    digits = zlib.crc32(str(tag).encode()) % 10**9
    return f"7{digits:09d}:planted-bot-token-{tag}".ljust(46, "x")


def claude_document(tag: int | str, expires_at_ms: int = EXPIRES_AT_MS) -> str:
    """A `.credentials.json` document with planted OAuth tokens."""
    from core.cloud.rachel8 import ClaudeCredentials

    return ClaudeCredentials(
        f"sk-ant-oat01-planted-access-{tag}", f"sk-ant-ort01-planted-refresh-{tag}", expires_at_ms
    ).document()


def paying_customer(ring: KeyRing, n: int | None = None, **fields: object) -> Customer:
    """A customer with planted secrets Rachel8 accepts and an active subscription."""
    from core.store.vault import seal

    owner = customer(**{"owner_telegram_user_id": OWNER_ID, **fields})
    tag = n if n is not None else owner.id
    seal(ring, owner, "telegram_bot_token", bot_token(f"{tag:06d}"))
    seal(ring, owner, "claude_credentials", claude_document(f"{tag:06d}"))
    owner.save()
    subscription(owner)
    return owner


def planted_secrets(owner: Customer, ring: KeyRing) -> list[str]:
    """The customer's stored secrets (bot token, credentials document, STT key if any),
    then each OAuth token of the document on its own."""
    from core.cloud.rachel8 import parse_credentials_document
    from core.store.vault import reveal

    found = [
        v
        for v in (
            reveal(ring, owner, "telegram_bot_token"),
            reveal(ring, owner, "claude_credentials"),
            reveal(ring, owner, "stt_api_key"),
        )
        if v
    ]
    document = reveal(ring, owner, "claude_credentials")
    if document:
        credentials = parse_credentials_document(document, now_ms=None)
        found += [credentials.access_token, credentials.refresh_token]
    return found


RACHEL8_COMMIT = "63f162e9302a66344772ab23653789f701c7bcf9"


def install_report(**fields: Any) -> dict[str, Any]:
    """A VPS's install report as its bootstrap sends it (a good install unless `fields` say)."""
    report: dict[str, Any] = {
        "ok": True,
        "failed_step": None,
        "exit_status": None,
        "log_tail": "",
        "cloud_init": {"status": "running", "errors": []},
        "commit": RACHEL8_COMMIT,
        "versions": {"bun": "1.4.5", "claude_code": "2.1.332"},
    }
    report.update(fields)
    return report
