"""Carrying out a batch of stored deploys with a fixed number of statements.

`core.intake.carry_out` does one deploy through the ORM: about nine
statements and three savepoints, which made the intake the largest part of a
worker's CPU per provision (`BENCHMARKS.md`). The common deploy is always the
same: a customer we know (their subscription made them known before the
webhook could be admitted) sends new credentials and gets a server. Here a
whole batch of those takes one read of the customers with their
subscriptions, one of their live servers, and one write per table (customers,
servers and their names, events, deliveries), whatever the batch's size.

What is not the common deploy is handed to `carry_out`, one by one and in
arrival order, after the batch: a customer without a row, and a second
deploy for a customer already in the batch (it must see what the first one
did). If the batch's writes conflict with a concurrent writer (another
process created this customer's server a moment ago), the batch's savepoint
is rolled back and every deploy of it goes the one-by-one way, which settles
each conflict as it always has.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from core.domain.deploys import refusal, server_name
from core.domain.intake import (
    DONE,
    REFUSED,
    DeployOrder,
    Outcome,
    carry_out,
    open_order,
    record_outcomes,
)
from core.domain.lifecycle import LIVE, Status
from core.errors import CryptoError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.platform.settings import Settings
from core.security.crypto import Binding, Ciphertext, KeyRing
from core.store.db import current
from core.store.models import Customer, Event, Server, Subscription, WebhookDelivery

log = logging.getLogger(__name__)

_CUSTOMER = Customer._meta.table_name
_LIVE = [s.value for s in LIVE]
_SECRETS = ("telegram_bot_token", "claude_credentials")


@dataclass(frozen=True)
class _Known:
    """A customer's row as the batch reads it (with their subscription's status)."""

    id: int
    external_id: str
    created_at: datetime
    sealed: tuple[Ciphertext | None, Ciphertext | None]
    subscription: str | None


def carry_out_many(
    deliveries: Sequence[WebhookDelivery],
    ring: KeyRing,
    settings: Settings,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> list[Outcome]:
    """Carry out claimed deliveries and record their outcomes, in the caller's transaction.

    Returns:
        One outcome per delivery, in the order given.

    Raises:
        peewee.PeeweeException: the database failed (the caller's transaction rolls back).
    """
    db = current()
    outcomes: dict[str, Outcome] = {}
    orders: list[tuple[WebhookDelivery, DeployOrder]] = []
    for delivery in deliveries:
        order = open_order(delivery, ring)
        if isinstance(order, Outcome):
            outcomes[delivery.webhook_id] = order
        else:
            orders.append((delivery, order))
    later: list[WebhookDelivery] = []
    if orders:
        try:
            with db.atomic():
                later = _carry_out_common(orders, ring, settings, clock.now(), outcomes)
        except peewee.IntegrityError as exc:
            log.info("intake: a batch conflicted with a concurrent writer (%s); one by one", exc)
            for delivery, _ in orders:
                outcomes.pop(delivery.webhook_id, None)
            later = [d for d, _ in orders]
        else:
            _log_created(orders, outcomes)
    record_outcomes(list(outcomes.values()), clock.now())
    for delivery in later:
        outcomes[delivery.webhook_id] = carry_out(delivery, ring, settings, clock=clock)
    return [outcomes[d.webhook_id] for d in deliveries]


def _log_created(
    orders: Sequence[tuple[WebhookDelivery, DeployOrder]], outcomes: dict[str, Outcome]
) -> None:
    for delivery, order in orders:
        outcome = outcomes.get(delivery.webhook_id)
        if outcome is not None and outcome.created:
            log.info(
                "server %s: deploy accepted for customer %s",
                outcome.server_id,
                order.customer_id,
                extra={"server_id": outcome.server_id, "phase": "pending"},
            )


def _carry_out_common(
    orders: Sequence[tuple[WebhookDelivery, DeployOrder]],
    ring: KeyRing,
    settings: Settings,
    now: datetime,
    outcomes: dict[str, Outcome],
) -> list[WebhookDelivery]:
    """The common deploys of the batch; returns the deliveries left for one-by-one."""
    known = _customers({order.customer_id for _, order in orders})
    later: list[WebhookDelivery] = []
    common: list[tuple[WebhookDelivery, DeployOrder, _Known]] = []
    taken: set[str] = set()
    for delivery, order in orders:
        customer = known.get(order.customer_id)
        if customer is None or order.customer_id in taken:
            later.append(delivery)
            continue
        taken.add(order.customer_id)
        common.append((delivery, order, customer))
    if not common:
        return later
    # In id order: two batches writing the same customers lock their rows (and
    # wait on each other's new servers) in one order, so they cannot deadlock.
    common.sort(key=lambda item: item[2].id)
    live = _live_servers([c.id for _, _, c in common])
    _update_customers(ring, [(order, customer) for _, order, customer in common], now)
    wanted: list[tuple[WebhookDelivery, DeployOrder, _Known]] = []
    for delivery, order, customer in common:
        wid = delivery.webhook_id
        refused = refusal(customer.external_id, customer.subscription)
        if refused is not None:
            outcomes[wid] = Outcome(wid, REFUSED, code=refused.code, message=refused.message)
        elif customer.id in live:
            server_id, status = live[customer.id]
            reinject = status == Status.READY and _secrets_differ(ring, order, customer)
            outcomes[wid] = Outcome(wid, DONE, server_id, False, reinject)
        else:
            wanted.append((delivery, order, customer))
    for (delivery, _, _), server in zip(
        wanted, _create_servers(settings, [(o, c) for _, o, c in wanted], now), strict=True
    ):
        wid = delivery.webhook_id
        outcomes[wid] = Outcome(wid, DONE, server.id, True, server=server)
    return later


def _customers(external_ids: set[str]) -> dict[str, _Known]:
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
        .where(Customer.external_id.in_(external_ids))
        .tuples()
    )
    return {row[1]: _Known(row[0], row[1], row[2], (row[3], row[4]), row[5]) for row in rows}


def _live_servers(customer_ids: list[int]) -> dict[int, tuple[int, str]]:
    rows: Any = (
        Server.select(Server.customer, Server.id, Server.status)
        .where(Server.customer.in_(customer_ids) & Server.status.in_(_LIVE))
        .tuples()
    )
    return {customer_id: (server_id, status) for customer_id, server_id, status in rows}


def _secrets_differ(ring: KeyRing, order: DeployOrder, customer: _Known) -> bool:
    """Whether the deploy brings credentials other than those stored (unreadable: yes)."""
    given = (order.telegram_bot_token, order.claude_credentials)
    for name, sealed, plain in zip(_SECRETS, customer.sealed, given, strict=True):
        if sealed is None:
            return True
        try:
            if ring.open(sealed, Binding(_CUSTOMER, customer.id, name)) != plain:
                return True
        except CryptoError:
            return True
    return False


def _update_customers(
    ring: KeyRing, pairs: Sequence[tuple[DeployOrder, _Known]], now: datetime
) -> None:
    """Email and freshly sealed credentials for every customer, in one statement.

    An insert that conflicts on the id is the portable (PostgreSQL and SQLite)
    way to update many rows with values of their own; the rows exist, so it
    only ever updates, and only the columns a deploy sets.
    """
    rows = []
    for order, customer in pairs:
        rows.append(
            {
                Customer.id: customer.id,
                Customer.external_id: customer.external_id,
                Customer.email: order.email,
                Customer.created_at: customer.created_at,
                Customer.updated_at: now,
                Customer.telegram_bot_token: ring.seal(
                    order.telegram_bot_token, Binding(_CUSTOMER, customer.id, _SECRETS[0])
                ),
                Customer.claude_credentials: ring.seal(
                    order.claude_credentials, Binding(_CUSTOMER, customer.id, _SECRETS[1])
                ),
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


def _create_servers(
    settings: Settings, pairs: Sequence[tuple[DeployOrder, _Known]], now: datetime
) -> list[Server]:
    """The pending servers, named, with their first timeline entry (three statements)."""
    if not pairs:
        return []
    fields = [
        {
            "customer": customer.id,
            "status": Status.PENDING.value,
            "location": order.location or settings.location,
            "server_type": order.server_type or settings.server_type,
            "image": settings.image,
            "requested_by": "webhook",
            "created_at": now,
            "updated_at": now,
            "status_changed_at": now,
        }
        for order, customer in pairs
    ]
    inserted: Any = (
        Server.insert_many(fields).returning(Server.customer, Server.id).tuples().execute()
    )
    ids: dict[int, int] = dict(inserted)
    servers = [
        Server(id=ids[customer.id], name=server_name(settings, ids[customer.id]), **row)
        for (_, customer), row in zip(pairs, fields, strict=True)
    ]
    by_id = [(s.id, s.name) for s in servers]
    Server.update(name=peewee.Case(Server.id, by_id)).where(
        Server.id.in_([i for i, _ in by_id])
    ).execute()
    Event.insert_many(
        [
            {
                "server": s.id,
                "at": now,
                "kind": "transition",
                "actor": "webhook",
                "message": f"deploy accepted ({s.server_type} in {s.location})",
                "to_status": Status.PENDING.value,
            }
            for s in servers
        ]
    ).execute()
    return servers
