"""Customers: created or updated from the dashboard's webhooks, secrets sealed at rest.

A ciphertext is bound to its row id (`core.store.vault`), so a new customer's row is
inserted first and its secrets sealed into it afterwards, inside one
transaction: no reader ever sees a customer whose secrets are half written.

A deploy brings the customer's details (`Details`); the intake stores those
of many customers at once (`known`, `create`, `save`: one statement each).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from core.cloud.rachel8 import (
    Rachel8Config,
    check_bot_token,
    check_owner_id,
    check_speech_to_text,
    parse_credentials_document,
)
from core.errors import CryptoError, RachelError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.security.crypto import KeyRing
from core.store.db import current
from core.store.models import Customer, Subscription
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


@dataclass(frozen=True)
class Details:
    """What a deploy says about its customer: the email, and the credentials to seal."""

    email: str
    telegram_bot_token: str
    claude_credentials: str


def secrets_differ(ring: KeyRing, customer: Customer, details: Details) -> bool:
    """Whether these credentials differ from the ones stored (unreadable counts as differing)."""
    try:
        stored = (
            reveal(ring, customer, "telegram_bot_token"),
            reveal(ring, customer, "claude_credentials"),
        )
    except CryptoError:
        return True
    return stored != (details.telegram_bot_token, details.claude_credentials)


def known(external_ids: Collection[str]) -> dict[str, tuple[Customer, str | None]]:
    """The customers we know among these, each with their subscription's status (None: none).

    One statement; the rows hold what `save` and `secrets_differ` need (not
    the Telegram chat id).
    """
    rows: Any = (
        Customer.select(
            Customer.id,
            Customer.external_id,
            Customer.created_at,
            Customer.telegram_bot_token,
            Customer.claude_credentials,
            Subscription.status,
        )
        .join(Subscription, peewee.JOIN.LEFT_OUTER)
        .where(Customer.external_id.in_(list(external_ids)))
        .tuples()
    )
    return {
        external_id: (
            Customer(
                id=row_id,
                external_id=external_id,
                created_at=created_at,
                telegram_bot_token=token,
                claude_credentials=credentials,
            ),
            status,
        )
        for row_id, external_id, created_at, token, credentials, status in rows
    }


def create(new: Sequence[tuple[str, str]], now: datetime) -> list[Customer]:
    """Rows for customers we do not know yet, (external id, email) each, in one statement.

    They hold no secrets yet: a ciphertext is bound to its row id, so `save`
    seals them into the rows afterwards (in the caller's transaction).

    Raises:
        peewee.IntegrityError: a concurrent writer created one of them first.
    """
    if not new:
        return []
    rows = [
        {"external_id": external_id, "email": email, "created_at": now, "updated_at": now}
        for external_id, email in new
    ]
    inserted: Any = (
        Customer.insert_many(rows).returning(Customer.external_id, Customer.id).tuples().execute()
    )
    ids: dict[str, int] = dict(inserted)
    return [
        Customer(id=ids[ext], external_id=ext, email=email, created_at=now, updated_at=now)
        for ext, email in new
    ]


def save(ring: KeyRing, updates: Sequence[tuple[Customer, Details]], now: datetime) -> None:
    """Every customer's email and freshly sealed credentials, in one statement.

    The rows are updated in the order given (callers sort them by id, so two
    writers lock rows in one order). An insert that conflicts on the id is the
    portable (PostgreSQL and SQLite) way to update many rows with values of
    their own; the rows exist, so it only ever updates, and only the columns a
    deploy sets.
    """
    if not updates:
        return
    rows = []
    for customer, details in updates:
        customer.email = details.email
        customer.updated_at = now
        seal(ring, customer, "telegram_bot_token", details.telegram_bot_token)
        seal(ring, customer, "claude_credentials", details.claude_credentials)
        rows.append(
            {
                Customer.id: customer.id,
                Customer.external_id: customer.external_id,
                Customer.email: customer.email,
                Customer.created_at: customer.created_at,
                Customer.updated_at: now,
                Customer.telegram_bot_token: customer.telegram_bot_token,
                Customer.claude_credentials: customer.claude_credentials,
            }
        )
    set_from_row = [
        Customer.email,
        Customer.updated_at,
        Customer.telegram_bot_token,
        Customer.claude_credentials,
    ]
    Customer.insert_many(rows).on_conflict(
        conflict_target=[Customer.id], preserve=set_from_row
    ).execute()


class CustomerIncomplete(RachelError):
    """A customer lacks a value Rachel8 requires (from before it was collected)."""

    code = "customer_incomplete"


def rachel8_config(ring: KeyRing, customer: Customer, *, now: datetime) -> Rachel8Config:
    """Everything the injection writes for this customer, opened and checked.

    Raises:
        CustomerIncomplete: a required value was never given (customers from before
            Rachel8 ran as published have no owner id): a deploy must send it first.
        ConfigError: a stored value Rachel8 would refuse.
        CryptoError: a ciphertext cannot be opened.
    """
    token = reveal(ring, customer, "telegram_bot_token")
    document = reveal(ring, customer, "claude_credentials")
    owner_id: int | None = customer.owner_telegram_user_id
    missing = [
        name
        for name, value in (
            ("owner_telegram_user_id", owner_id),
            ("telegram_bot_token", token),
            ("claude_credentials", document),
        )
        if value is None
    ]
    if missing or owner_id is None or token is None or document is None:
        raise CustomerIncomplete(
            f"customer {customer.external_id} has no {', '.join(missing)}: "
            "send a deploy with it before its secrets can be injected"
        )
    # An expired access token is fine here: the VPS's CLI refreshes it.
    credentials = parse_credentials_document(document, now_ms=None)
    speech = None
    if customer.stt_provider:
        key = reveal(ring, customer, "stt_api_key")
        if key:
            speech = check_speech_to_text(customer.stt_provider, key)
    return Rachel8Config(
        bot_token=check_bot_token(token),
        owner_id=check_owner_id(owner_id),
        credentials=credentials,
        speech=speech,
    )
