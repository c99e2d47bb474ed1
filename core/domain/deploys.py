"""Accepting a deploy: the server row that the pipeline then carries to ready.

A customer has at most one live server. A deploy for a customer who already
has one returns that server (the database's partial unique index settles two
racing deploys). The caller enqueues the first phase after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import peewee

from core.domain.lifecycle import LIVE, validate_actor
from core.errors import RachelError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.platform.settings import Settings
from core.store.db import current
from core.store.models import Customer, Event, Server, Subscription

log = logging.getLogger(__name__)

ACTIVE_SUBSCRIPTION = frozenset({"active"})


class DeployRefused(RachelError):
    """A deploy that cannot be accepted (no active subscription, unknown customer)."""

    code = "deploy_refused"

    def __init__(self, message: str, *, code: str, status: int) -> None:
        super().__init__(message, code=code)
        self.status = status


@dataclass(frozen=True)
class DeployResult:
    """The server a deploy refers to, and whether this call created it."""

    server: Server
    created: bool


def server_name(settings: Settings, server_id: int) -> str:
    """The deterministic Hetzner name of a server: `<prefix>-<id>`."""
    return f"{settings.name_prefix}-{server_id}"


def live_server(customer: Customer) -> Server | None:
    """The customer's live (not deleted) server, if any."""
    server: Server | None = (
        Server.select()
        .where((Server.customer == customer) & (Server.status.in_([s.value for s in LIVE])))
        .first()
    )
    return server


def refusal(external_id: str, status: str | None) -> DeployRefused | None:
    """Why a customer whose subscription is `status` (None: none) may not deploy, if so."""
    if status is None:
        return DeployRefused(
            f"customer {external_id} has no subscription",
            code="subscription_required",
            status=402,
        )
    if status not in ACTIVE_SUBSCRIPTION:
        return DeployRefused(
            f"customer {external_id}'s subscription is {status}",
            code="subscription_inactive",
            status=402,
        )
    return None


def require_active_subscription(customer: Customer) -> Subscription:
    """Raises DeployRefused (402) unless the customer's subscription is active."""
    subscription = Subscription.get_or_none(Subscription.customer == customer)
    refused = refusal(customer.external_id, subscription.status if subscription else None)
    if refused is not None:
        raise refused
    assert subscription is not None
    return subscription


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
        DeployRefused: the subscription is missing or not active (402).
    """
    validate_actor(actor)
    require_active_subscription(customer)
    existing = live_server(customer)
    if existing is not None:
        return DeployResult(existing, created=False)
    now = clock.now()
    db = current()
    try:
        with db.atomic():
            server = Server.create(
                customer=customer,
                status="pending",
                location=location or settings.location,
                server_type=server_type or settings.server_type,
                image=settings.image,
                requested_by=actor,
                created_at=now,
                updated_at=now,
                status_changed_at=now,
            )
            server.name = server_name(settings, server.id)
            server.save(only=[Server.name])
            Event.create(
                server=server,
                at=now,
                kind="transition",
                actor=actor,
                message=f"deploy accepted ({server.server_type} in {server.location})",
                to_status="pending",
            )
    except peewee.IntegrityError:
        # Another deploy for this customer committed first: theirs is the live one.
        existing = live_server(customer)
        if existing is None:
            raise
        return DeployResult(existing, created=False)
    log.info(
        "server %s: deploy accepted for customer %s",
        server.id,
        customer.external_id,
        extra={"server_id": server.id, "phase": "pending"},
    )
    return DeployResult(server, created=True)
