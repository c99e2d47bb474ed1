"""The rules of a deploy: who may deploy, and the server row the pipeline carries to ready.

A customer has at most one live server. A deploy for a customer who already
has one returns that server (the database's partial unique index settles two
racing deploys). The caller enqueues the first phase after commit.

Every way in to a deploy uses these rules: the intake carries out stored
deploys in batches (`core.domain.carry_out`), the operator deploys one
customer with `request_deploy`. Both refuse with `refusal` and create servers
with `create_servers`, so a server's row, name and first event are written in
one place.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from core.domain.lifecycle import LIVE, Status, validate_actor
from core.errors import RachelError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.platform.settings import Settings
from core.store.db import current
from core.store.models import Customer, Event, Server, Subscription

log = logging.getLogger(__name__)

ACTIVE_SUBSCRIPTION = frozenset({"active"})
_LIVE = [s.value for s in LIVE]


class DeployRefused(RachelError):
    """A deploy that cannot be accepted (no subscription, or one that is not active).

    Its `code` says which: `subscription_required` or `subscription_inactive`.
    """

    code = "deploy_refused"


@dataclass(frozen=True)
class DeployResult:
    """The server a deploy refers to, and whether this call created it."""

    server: Server
    created: bool


@dataclass(frozen=True)
class ServerRequest:
    """A server a deploy asks for: whose, and where (None: the settings' default)."""

    customer_id: int
    location: str | None = None
    server_type: str | None = None


def server_name(settings: Settings, server_id: int) -> str:
    """The deterministic Hetzner name of a server: `<prefix>-<id>`."""
    return f"{settings.name_prefix}-{server_id}"


def live_server(customer: Customer) -> Server | None:
    """The customer's live (not deleted) server, if any."""
    server: Server | None = (
        Server.select().where((Server.customer == customer) & (Server.status.in_(_LIVE))).first()
    )
    return server


def live_servers(customer_ids: Sequence[int]) -> dict[int, tuple[int, str]]:
    """{customer id: (server id, status)} of these customers' live servers, in one statement."""
    rows: Any = (
        Server.select(Server.customer, Server.id, Server.status)
        .where(Server.customer.in_(customer_ids) & Server.status.in_(_LIVE))
        .tuples()
    )
    return {customer_id: (server_id, status) for customer_id, server_id, status in rows}


def refusal(external_id: str, status: str | None) -> DeployRefused | None:
    """Why a customer whose subscription is `status` (None: none) may not deploy, if so."""
    if status is None:
        return DeployRefused(
            f"customer {external_id} has no subscription", code="subscription_required"
        )
    if status not in ACTIVE_SUBSCRIPTION:
        return DeployRefused(
            f"customer {external_id}'s subscription is {status}", code="subscription_inactive"
        )
    return None


def require_active_subscription(customer: Customer) -> Subscription:
    """The customer's subscription.

    Raises:
        DeployRefused: it is missing or not active.
    """
    subscription = Subscription.get_or_none(Subscription.customer == customer)
    refused = refusal(customer.external_id, subscription.status if subscription else None)
    if refused is not None:
        raise refused
    assert subscription is not None
    return subscription


def create_servers(
    settings: Settings, requests: Sequence[ServerRequest], *, actor: str, now: datetime
) -> list[Server]:
    """The pending servers, named, each with its first timeline entry.

    Three statements however many servers: insert them, name them (the name
    holds the id, so it can only follow the insert), insert their events.

    Args:
        requests: one per customer at most (the caller checked that none has
            a live server).

    Returns:
        The servers as written, in the order of `requests`.

    Raises:
        peewee.IntegrityError: a customer has a live server after all (a
            concurrent deploy committed it): the caller's savepoint rolls back.
    """
    if not requests:
        return []
    validate_actor(actor)
    fields = [
        {
            "customer": request.customer_id,
            "status": Status.PENDING.value,
            "location": request.location or settings.location,
            "server_type": request.server_type or settings.server_type,
            "image": settings.image,
            "requested_by": actor,
            "created_at": now,
            "updated_at": now,
            "status_changed_at": now,
        }
        for request in requests
    ]
    inserted: Any = (
        Server.insert_many(fields).returning(Server.customer, Server.id).tuples().execute()
    )
    ids: dict[int, int] = dict(inserted)
    servers = [
        Server(
            id=ids[request.customer_id], name=server_name(settings, ids[request.customer_id]), **row
        )
        for request, row in zip(requests, fields, strict=True)
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
                "actor": actor,
                "message": f"deploy accepted ({s.server_type} in {s.location})",
                "to_status": Status.PENDING.value,
            }
            for s in servers
        ]
    ).execute()
    return servers


def log_accepted(server: Server, external_id: str) -> None:
    """Log a created server (once its transaction or savepoint has succeeded)."""
    log.info(
        "server %s: deploy accepted for customer %s",
        server.id,
        external_id,
        extra={"server_id": server.id, "phase": "pending"},
    )


def request_deploy(
    customer: Customer,
    settings: Settings,
    *,
    location: str | None = None,
    server_type: str | None = None,
    actor: str = "webhook",
    clock: Clock = SYSTEM_CLOCK,
) -> DeployResult:
    """Create the customer's pending server, or return the live one they have.

    Raises:
        DeployRefused: the subscription is missing or not active.
    """
    validate_actor(actor)
    require_active_subscription(customer)
    existing = live_server(customer)
    if existing is not None:
        return DeployResult(existing, created=False)
    request = ServerRequest(customer.id, location, server_type)
    try:
        with current().atomic():
            (server,) = create_servers(settings, [request], actor=actor, now=clock.now())
    except peewee.IntegrityError:
        # Another deploy for this customer committed first: theirs is the live one.
        existing = live_server(customer)
        if existing is None:
            raise
        return DeployResult(existing, created=False)
    log_accepted(server, customer.external_id)
    return DeployResult(server, created=True)
