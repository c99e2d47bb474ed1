"""Test data builders (real rows in the real test database)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

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


def paying_customer(ring: KeyRing, n: int | None = None, **fields: object) -> Customer:
    """A customer with planted secrets and an active subscription."""
    from core.store.vault import seal

    owner = customer(**fields)
    tag = n if n is not None else owner.id
    seal(ring, owner, "telegram_bot_token", f"{700000 + tag}:planted-bot-token-{tag:06d}")
    seal(ring, owner, "claude_credentials", f'{{"refresh_token": "planted-claude-{tag:06d}"}}')
    owner.save()
    subscription(owner)
    return owner


def planted_secrets(owner: Customer, ring: KeyRing) -> list[str]:
    from core.store.vault import reveal

    return [
        v
        for v in (
            reveal(ring, owner, "telegram_bot_token"),
            reveal(ring, owner, "claude_credentials"),
        )
        if v
    ]
