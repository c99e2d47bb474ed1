"""Customers: created or updated from the dashboard's webhooks, secrets sealed at rest.

A ciphertext is bound to its row id (`core.store.vault`), so a new customer's row is
inserted first and its secrets sealed into it afterwards, inside one
transaction: no reader ever sees a customer whose secrets are half written.
"""

from __future__ import annotations

import logging

from core.errors import CryptoError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.security.crypto import KeyRing
from core.store.db import current
from core.store.models import Customer
from core.store.vault import reveal, seal

log = logging.getLogger(__name__)


def find(external_id: str) -> Customer | None:
    """The customer with this dashboard id, if we know them."""
    customer: Customer | None = Customer.get_or_none(Customer.external_id == external_id)
    return customer


def ensure(external_id: str, email: str | None = None, *, clock: Clock = SYSTEM_CLOCK) -> Customer:
    """The customer with this id, created (without secrets) when unknown.

    A subscription event may arrive before the first deploy; the deploy fills
    in the secrets. A given `email` replaces the stored one.
    """
    now = clock.now()
    with current().atomic():
        customer = find(external_id)
        if customer is None:
            created: Customer = Customer.create(
                external_id=external_id, email=email or "", created_at=now, updated_at=now
            )
            log.info("customer %s created", external_id, extra={"customer_id": external_id})
            return created
        if email and email != customer.email:
            customer.email = email
            customer.updated_at = now
            customer.save(only=[Customer.email, Customer.updated_at])
    return customer


def secrets_differ(
    ring: KeyRing, customer: Customer, *, telegram_bot_token: str, claude_credentials: str
) -> bool:
    """Whether these credentials differ from the ones stored (unreadable counts as differing)."""
    try:
        stored = (
            reveal(ring, customer, "telegram_bot_token"),
            reveal(ring, customer, "claude_credentials"),
        )
    except CryptoError:
        return True
    return stored != (telegram_bot_token, claude_credentials)


def upsert(
    ring: KeyRing,
    external_id: str,
    email: str,
    *,
    telegram_bot_token: str,
    claude_credentials: str,
    clock: Clock = SYSTEM_CLOCK,
    known: Customer | None = None,
) -> Customer:
    """Create or update a customer and seal their secrets into the row.

    Runs in one transaction (a savepoint when the caller has one open).

    Args:
        known: the customer's row as the caller just read it in this
            transaction (saves reading it again); None: look it up.

    Returns:
        The saved customer, its secret columns holding fresh ciphertexts.
    """
    now = clock.now()
    with current().atomic():
        customer = known if known is not None else find(external_id)
        if customer is None:
            customer = Customer.create(
                external_id=external_id, email=email, created_at=now, updated_at=now
            )
        customer.email = email
        customer.updated_at = now
        seal(ring, customer, "telegram_bot_token", telegram_bot_token)
        seal(ring, customer, "claude_credentials", claude_credentials)
        customer.save()
    return customer
