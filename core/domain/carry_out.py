"""Carrying out stored deploys, one or a batch, with a fixed number of statements per batch.

This is the one implementation of a deploy the webhook stored (`core.domain.intake`):
the intake job hands it the deliveries it claimed, whether one or hundreds.
Through the ORM a deploy took about nine statements and three savepoints,
which made the intake the largest part of a worker's CPU per provision
(`BENCHMARKS.md`); here a batch is carried out in rounds of set-based
statements instead. A round holds at most one deploy per customer, in arrival
order (a customer's second deploy waits for the next round and sees what the
first one did, as the sender would expect). Whatever its size, a round takes
one read of the customers with their subscriptions, one insert of those we do
not know yet (only when there are any), one write of their emails, owner ids and
sealed credentials, one read of their live servers and the three statements of
`deploys.create_servers`; the outcomes of the whole batch are one more.

Each round runs in a savepoint. If it conflicts with a concurrent writer
(another process created this customer, or their server, a moment ago), the
savepoint is rolled back and each deploy of the round is tried alone, up to
three times, each try reading afresh what the other writer committed.

The rules of a deploy are not written here: who may deploy and what a new
server looks like are `core.domain.deploys`'; how a customer's credentials
are sealed, compared and stored, `core.domain.customers`'.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import peewee

from core.domain import customers, deploys
from core.domain.deploy_order import DeployOrder
from core.domain.intake import DONE, FAILED, REFUSED, Outcome, open_order, record_outcomes
from core.domain.lifecycle import Status
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.platform.settings import Settings
from core.security.crypto import KeyRing
from core.store.db import current
from core.store.models import Customer, Server, WebhookDelivery

log = logging.getLogger(__name__)

ACTOR = "webhook"
#: Tries of a deploy alone that meets a concurrent writer each time.
_ATTEMPTS = 3


@dataclass(frozen=True)
class _Order:
    webhook_id: str
    order: DeployOrder


@dataclass
class _Round:
    """What a round decided, and the servers it created (logged once it commits)."""

    outcomes: dict[str, Outcome]
    created: list[tuple[Server, str]]


def carry_out(
    deliveries: Sequence[WebhookDelivery],
    ring: KeyRing,
    settings: Settings,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> list[Outcome]:
    """Carry out claimed deliveries and record their outcomes, in the caller's transaction.

    A refusal (the subscription lapsed since the deploy was admitted) and an
    unreadable payload are outcomes, not errors: the delivery leaves the queue
    either way.

    Returns:
        One outcome per delivery, in the order given.

    Raises:
        peewee.PeeweeException: the database failed (the caller's transaction rolls back).
    """
    outcomes: dict[str, Outcome] = {}
    orders: list[_Order] = []
    for delivery in deliveries:
        order = open_order(delivery, ring)
        if isinstance(order, Outcome):
            outcomes[delivery.webhook_id] = order
        else:
            orders.append(_Order(delivery.webhook_id, order))
    for round_ in _rounds(orders):
        outcomes.update(_settle(round_, ring, settings, clock))
    record_outcomes(list(outcomes.values()), clock.now())
    return [outcomes[d.webhook_id] for d in deliveries]


def _rounds(orders: Sequence[_Order]) -> list[list[_Order]]:
    """The orders in rounds: a customer's n-th deploy in the n-th round."""
    rounds: list[list[_Order]] = []
    seen: dict[str, int] = {}
    for item in orders:
        n = seen.get(item.order.customer_id, 0)
        seen[item.order.customer_id] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(item)
    return rounds


def _settle(
    orders: list[_Order], ring: KeyRing, settings: Settings, clock: Clock
) -> dict[str, Outcome]:
    """One round in a savepoint; on a conflict, each of its deploys alone."""
    db = current()
    alone = len(orders) == 1
    for _ in range(_ATTEMPTS if alone else 1):
        try:
            with db.atomic():
                done = _deploy(orders, ring, settings, clock.now())
        except peewee.IntegrityError as exc:
            if alone:
                continue  # a concurrent deploy for this customer committed first: look again
            log.info("intake: a batch conflicted with a concurrent writer (%s); one by one", exc)
            settled: dict[str, Outcome] = {}
            for item in orders:
                settled.update(_settle([item], ring, settings, clock))
            return settled
        for server, external_id in done.created:
            deploys.log_accepted(server, external_id)
        return done.outcomes
    wid = orders[0].webhook_id
    return {wid: Outcome(wid, FAILED, code="conflict", message="raced three times; giving up")}


def _deploy(orders: list[_Order], ring: KeyRing, settings: Settings, now: datetime) -> _Round:
    """A round's deploys (one per customer), set-based."""
    wanted = {item.order.customer_id: item.order for item in orders}
    rows = customers.known(wanted.keys())
    new = sorted(set(wanted) - rows.keys())  # sorted: concurrent inserts wait in one order
    for customer in customers.create([(ext, wanted[ext].email) for ext in new], now):
        rows[customer.external_id] = (customer, None)
    # In id order: two batches writing the same customers lock their rows (and
    # wait on each other's new servers) in one order, so they cannot deadlock.
    ordered = sorted(orders, key=lambda item: rows[item.order.customer_id][0].id)
    owners = [rows[item.order.customer_id][0] for item in ordered]
    details = [_details(item.order) for item in ordered]
    live = deploys.live_servers([c.id for c in owners])
    # Compared before `save` seals the new ones; decrypted only for ready servers.
    reinject = {
        c.id
        for c, d in zip(owners, details, strict=True)
        if c.id in live and live[c.id][1] == Status.READY and customers.secrets_differ(ring, c, d)
    }
    customers.save(ring, list(zip(owners, details, strict=True)), now)
    outcomes: dict[str, Outcome] = {}
    creating: list[tuple[_Order, Customer]] = []
    for item, customer in zip(ordered, owners, strict=True):
        wid = item.webhook_id
        refused = deploys.refusal(customer.external_id, rows[customer.external_id][1])
        if refused is not None:
            outcomes[wid] = Outcome(wid, REFUSED, code=refused.code, message=refused.message)
        elif customer.id in live:
            server_id = live[customer.id][0]
            outcomes[wid] = Outcome(wid, DONE, server_id, False, customer.id in reinject)
        else:
            creating.append((item, customer))
    requests = [
        deploys.ServerRequest(customer.id, item.order.location, item.order.server_type)
        for item, customer in creating
    ]
    servers = deploys.create_servers(settings, requests, actor=ACTOR, now=now)
    created: list[tuple[Server, str]] = []
    for (item, customer), server in zip(creating, servers, strict=True):
        outcomes[item.webhook_id] = Outcome(item.webhook_id, DONE, server.id, True, server=server)
        created.append((server, customer.external_id))
    return _Round(outcomes, created)


def _details(order: DeployOrder) -> customers.Details:
    return customers.Details(
        order.email,
        order.telegram_bot_token,
        order.claude_credentials,
        owner_telegram_user_id=order.owner_telegram_user_id,
        stt_provider=order.stt_provider,
        stt_api_key=order.stt_api_key,
    )
