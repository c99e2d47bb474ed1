"""Webhook deliveries: `webhook-id` as replay guard and idempotency key.

A delivery we accepted is stored with the SHA-256 of its body and the answer
we gave. The same id with the same body (the sender retrying) gets that answer
again without doing anything twice; the same id with another body is a replay
of a captured id with forged content, or a sender bug, and is refused
(`DeliveryConflict`). Only accepted deliveries are stored: a refused one
changed nothing, and its retry (say, once the subscription is active) is
evaluated afresh.

The answer is the edge's: the web app chooses it (its response status and
body) and core keeps it verbatim, never deciding or reading its code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.errors import RachelError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.store.models import WebhookDelivery


class DeliveryConflict(RachelError):
    """A `webhook-id` seen before with a different body."""

    code = "webhook_id_reused"


@dataclass(frozen=True)
class StoredAnswer:
    """The answer given to a delivery, kept for its repeats as the edge gave it.

    Attributes:
        code: the edge's code for the answer (the web app's response status),
            stored in `WebhookDelivery.response_status`; opaque to core.
        body: the answer's body (JSON).
    """

    code: int
    body: str


def body_digest(body: bytes) -> str:
    """The SHA-256 (hex) of a raw body."""
    return hashlib.sha256(body).hexdigest()


def lookup(webhook_id: str, kind: str, digest: str) -> StoredAnswer | None:
    """The stored answer for this delivery, None when it is new.

    Raises:
        DeliveryConflict: the id was used before for another body or another endpoint.
    """
    row: WebhookDelivery | None = WebhookDelivery.get_or_none(
        WebhookDelivery.webhook_id == webhook_id
    )
    if row is None:
        return None
    if row.body_sha256 != digest or row.kind != kind:
        raise DeliveryConflict(f"webhook-id {webhook_id} was already used for a different delivery")
    return StoredAnswer(code=row.response_status, body=row.response_body)


def record(
    webhook_id: str, kind: str, digest: str, answer: StoredAnswer, *, clock: Clock = SYSTEM_CLOCK
) -> None:
    """Store an accepted delivery and the answer given to it (in the caller's transaction).

    Raises:
        peewee.IntegrityError: a concurrent delivery with this id was stored first.
    """
    WebhookDelivery.insert(
        webhook_id=webhook_id,
        kind=kind,
        received_at=clock.now(),
        body_sha256=digest,
        response_status=answer.code,
        response_body=answer.body,
    ).execute()


def prune(older_than: timedelta, *, clock: Clock = SYSTEM_CLOCK) -> int:
    """Delete deliveries received before `now - older_than`; return how many.

    Senders retry a delivery under the same id with a fresh signature, for
    days; keep deliveries longer than the sender's retry schedule.
    """
    cutoff: datetime = clock.now() - older_than
    # A deploy not yet carried out is work, not history: it stays whatever its age.
    deleted: int = (
        WebhookDelivery.delete()
        .where(
            (WebhookDelivery.received_at < cutoff)
            & ((WebhookDelivery.state != "accepted") | WebhookDelivery.state.is_null())
        )
        .execute()
    )
    return deleted
