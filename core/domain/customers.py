"""Customers: created or updated from the dashboard's webhooks, secrets sealed at rest.

A ciphertext is bound to its row id (`core.store.vault`), so a new customer's row is
inserted first and its secrets sealed into it afterwards, inside one
transaction: no reader ever sees a customer whose secrets are half written.

A deploy brings the customer's details (`Details`); the intake stores those
of many customers at once (`known`, `create`, `save`: one statement each).
The injection reads them back with `rachel8_config`, which refuses, naming
it, a value a customer from before Rachel8 ran as published never gave.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import peewee

from core.cloud.rachel8 import (
    ConfigError,
    Rachel8Config,
    check_bot_token,
    check_owner_id,
    check_speech_to_text,
    parse_credentials_document,
)
from core.errors import CryptoError, RachelError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.security.crypto import KeyRing
from core.security.redaction import register_secret
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
    """What a deploy says about its customer: the email, Rachel8's values, the secrets to seal.

    `owner_telegram_user_id` None (a deploy stored by the release before this
    one) keeps the stored owner id; no speech-to-text clears the stored one.
    """

    email: str
    telegram_bot_token: str = field(repr=False)
    #: The `.credentials.json` document.
    claude_credentials: str = field(repr=False)
    owner_telegram_user_id: int | None = None
    stt_provider: str | None = None
    stt_api_key: str | None = field(default=None, repr=False)


def _owner(customer: Customer, details: Details) -> int | None:
    if details.owner_telegram_user_id is None:
        return customer.owner_telegram_user_id
    return details.owner_telegram_user_id


def secrets_differ(ring: KeyRing, customer: Customer, details: Details) -> bool:
    """Whether the deploy changes what Rachel8 runs with (unreadable counts as differing).

    The owner id and the speech-to-text provider are compared too: a new owner
    must reach the VPS's `.env` as surely as a new token.
    """
    try:
        stored = (
            reveal(ring, customer, "telegram_bot_token"),
            reveal(ring, customer, "claude_credentials"),
            reveal(ring, customer, "stt_api_key"),
        )
    except CryptoError:
        return True
    given = (details.telegram_bot_token, details.claude_credentials, details.stt_api_key)
    plain_stored = (customer.owner_telegram_user_id, customer.stt_provider)
    return stored != given or plain_stored != (_owner(customer, details), details.stt_provider)


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
            Customer.owner_telegram_user_id,
            Customer.stt_provider,
            Customer.stt_api_key,
            Subscription.status,
        )
        .join(Subscription, peewee.JOIN.LEFT_OUTER)
        .where(Customer.external_id.in_(list(external_ids)))
        .tuples()
    )
    found: dict[str, tuple[Customer, str | None]] = {}
    for row_id, external_id, created_at, token, credentials, owner, provider, key, status in rows:
        customer = Customer(
            id=row_id,
            external_id=external_id,
            created_at=created_at,
            telegram_bot_token=token,
            claude_credentials=credentials,
            owner_telegram_user_id=owner,
            stt_provider=provider,
            stt_api_key=key,
        )
        found[external_id] = (customer, status)
    return found


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
        customer.owner_telegram_user_id = _owner(customer, details)
        customer.stt_provider = details.stt_provider
        customer.stt_api_key = None
        if details.stt_api_key is not None:
            seal(ring, customer, "stt_api_key", details.stt_api_key)
        rows.append(
            {
                Customer.id: customer.id,
                Customer.external_id: customer.external_id,
                Customer.email: customer.email,
                Customer.created_at: customer.created_at,
                Customer.updated_at: now,
                Customer.telegram_bot_token: customer.telegram_bot_token,
                Customer.claude_credentials: customer.claude_credentials,
                Customer.owner_telegram_user_id: customer.owner_telegram_user_id,
                Customer.stt_provider: customer.stt_provider,
                Customer.stt_api_key: customer.stt_api_key,
            }
        )
    set_from_row = [
        Customer.email,
        Customer.updated_at,
        Customer.telegram_bot_token,
        Customer.claude_credentials,
        Customer.owner_telegram_user_id,
        Customer.stt_provider,
        Customer.stt_api_key,
    ]
    Customer.insert_many(rows).on_conflict(
        conflict_target=[Customer.id], preserve=set_from_row
    ).execute()


#: What Rachel8 cannot start without, and the code of the refusal when it was never given.
_REQUIRED = (
    ("owner_telegram_user_id", "missing_owner_id"),
    ("telegram_bot_token", "missing_bot_token"),
    ("claude_credentials", "missing_claude_credentials"),
)


class IncompleteConfig(RachelError):
    """A customer's stored values cannot make Rachel8's configuration.

    Not transient: only a new deploy webhook with the value can fix it.

    Attributes:
        field: the first value at fault, by its deploy webhook name.
    """

    code = "invalid_stored_config"

    def __init__(self, field_name: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.field = field_name


def missing_values(customer: Customer) -> list[str]:
    """The values Rachel8 requires that this customer never gave (nothing is decrypted)."""
    return [name for name, _ in _REQUIRED if getattr(customer, name) is None]


def missing_message(customer: Customer, missing: list[str]) -> str:
    """Why such a customer's secrets cannot be injected, and what fixes it."""
    return (
        f"customer {customer.external_id} never gave {', '.join(missing)} (created before the "
        "deploy webhook asked for it): Rachel8 cannot start without it; deliver a deploy "
        "webhook with it"
    )


def rachel8_config(ring: KeyRing, customer: Customer) -> Rachel8Config:
    """Everything the injection writes for this customer, revealed and checked again.

    Every secret revealed is registered for redaction (each OAuth token on its
    own: the document is registered whole by the key ring).

    Raises:
        IncompleteConfig: a required value was never given (code `missing_owner_id`,
            `missing_bot_token`, `missing_claude_credentials`) or a stored one
            breaks Rachel8's rules (`invalid_stored_config`).
        CryptoError: a secret does not open with this key ring.
    """
    missing = missing_values(customer)
    if missing:
        code = dict(_REQUIRED)[missing[0]]
        raise IncompleteConfig(missing[0], missing_message(customer, missing), code=code)
    token = reveal(ring, customer, "telegram_bot_token") or ""
    document = reveal(ring, customer, "claude_credentials") or ""
    stt_key = reveal(ring, customer, "stt_api_key")
    try:
        # No expiry check: the VPS's CLI refreshes an expired access token itself.
        credentials = parse_credentials_document(document, now_ms=None)
        register_secret(credentials.access_token)
        register_secret(credentials.refresh_token)
        speech = None
        if customer.stt_provider is not None or stt_key is not None:
            speech = check_speech_to_text(customer.stt_provider or "", stt_key or "")
        return Rachel8Config(
            bot_token=check_bot_token(token),
            owner_id=check_owner_id(customer.owner_telegram_user_id or 0),
            credentials=credentials,
            speech=speech,
        )
    except ConfigError as exc:
        raise IncompleteConfig(
            exc.field,
            f"customer {customer.external_id}: the stored {exc.message}; deliver a deploy "
            "webhook with a valid value",
        ) from exc
