"""The deploy intake: a deploy is stored, answered, and carried out by a job.

A deploy webhook does one thing before it is answered: `admit` stores it, in
a transaction shared with every other deploy that arrived meanwhile (the web
app's `IntakeWriter` batches them), as a `WebhookDelivery` in state
`accepted` with its order (`core.domain.deploy_order`: the request checked with
Rachel8's rules, the credentials normalised) sealed in its `payload`. The answer therefore
promises exactly what is durable: the deploy is recorded and will be carried
out. A job (`jobs.intake`) then claims accepted deliveries in arrival order,
carries them out with `core.domain.carry_out` (customer upsert, server row,
what the request used to do inline), records the outcome on each delivery
(`done` with the server, `refused`, or `failed`; `record_outcomes`) and
erases the payload. The status API shows a delivery's outcome at
`/api/deploys/{webhook-id}`.

What stays synchronous is what the sender must hear now: a bad signature or
body (refused before anything is stored), a repeated delivery (the stored
answer), a reused id (`DeliveryConflict`), and a customer without an active
subscription (`DeployRefused`, so that the sender retries once billing has
caught up, as before).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import peewee

from core.domain.deliveries import StoredAnswer
from core.domain.deploy_order import DeployOrder, register_order_secrets
from core.domain.deploys import DeployRefused, refusal
from core.errors import CryptoError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.security.crypto import Binding, KeyRing
from core.store.db import current, write_transaction
from core.store.models import Customer, Server, Subscription, WebhookDelivery
from core.store.vault import binding_for, reveal

log = logging.getLogger(__name__)

KIND = "deploy"
ACCEPTED, DONE, REFUSED, FAILED = "accepted", "done", "refused", "failed"


@dataclass(frozen=True)
class Submission:
    """One deploy delivery, verified and validated, on its way in."""

    webhook_id: str
    digest: str  # SHA-256 of the body, for the replay check
    customer_id: str
    #: The checked order, encoded (`DeployOrder`): it holds secrets, sealed before it is stored.
    order: bytes
    answer: StoredAnswer  # the answer the web app gives, stored for replays


@dataclass(frozen=True)
class Admission:
    """What `admit` decided for one submission.

    `seen`: a delivery with this id exists (stored earlier, or by a twin in
    the same batch or another process); the caller replays or refuses it.
    """

    verdict: str  # accepted, seen, refused
    refusal: DeployRefused | None = None


def payload_binding(webhook_id: str) -> Binding:
    """Where a delivery's sealed payload belongs (the row key is the webhook id)."""
    return binding_for(WebhookDelivery(webhook_id=webhook_id), "payload")


def admit(
    batch: Sequence[Submission], ring: KeyRing, *, clock: Clock = SYSTEM_CLOCK
) -> list[Admission]:
    """Store the deliveries that may be carried out, in one transaction.

    Three statements for the whole batch: which ids exist, the subscriptions
    of the customers, the insert of the accepted ones (a conflict with a
    concurrent twin makes that one `seen`).

    Raises:
        peewee.PeeweeException: the database failed (nothing of the batch is stored).
    """
    ids = [s.webhook_id for s in batch]
    db = current()
    with write_transaction(db):
        seen: Any = (
            WebhookDelivery.select(WebhookDelivery.webhook_id)
            .where(WebhookDelivery.webhook_id.in_(ids))
            .tuples()
        )
        existing: set[str] = {row[0] for row in seen}
        subscribed: Any = (
            Subscription.select(Customer.external_id, Subscription.status)
            .join(Customer)
            .where(Customer.external_id.in_({s.customer_id for s in batch}))
            .tuples()
        )
        statuses: dict[str, str] = dict(subscribed)
        verdicts: list[Admission] = []
        rows: list[dict[str, object]] = []
        now = clock.now()
        for s in batch:
            if s.webhook_id in existing:
                verdicts.append(Admission("seen"))
                continue
            refused = refusal(s.customer_id, statuses.get(s.customer_id))
            if refused is not None:
                verdicts.append(Admission("refused", refused))
                continue
            existing.add(s.webhook_id)  # a twin later in this batch is `seen`
            verdicts.append(Admission(ACCEPTED))
            rows.append(
                {
                    "webhook_id": s.webhook_id,
                    "kind": KIND,
                    "received_at": now,
                    "body_sha256": s.digest,
                    "response_status": s.answer.code,
                    "response_body": s.answer.body,
                    "state": ACCEPTED,
                    "customer_external_id": s.customer_id,
                    "payload": ring.seal(s.order.decode("utf-8"), payload_binding(s.webhook_id)),
                }
            )
        if rows:
            query = WebhookDelivery.insert_many(rows).on_conflict_ignore()
            inserted: Any = query.returning(WebhookDelivery.webhook_id).tuples()
            stored = {row[0] for row in inserted}
            if len(stored) < len(rows):
                verdicts = [
                    Admission("seen") if v.verdict == ACCEPTED and s.webhook_id not in stored else v
                    for s, v in zip(batch, verdicts, strict=True)
                ]
    return verdicts


def claim(limit: int) -> list[WebhookDelivery]:
    """Accepted deliveries, oldest first, locked for the caller's transaction.

    On PostgreSQL concurrent claimers skip each other's rows; SQLite has one
    writer at a time anyway.
    """
    query = (
        WebhookDelivery.select()
        .where(WebhookDelivery.state == ACCEPTED)
        .order_by(WebhookDelivery.received_at, WebhookDelivery.webhook_id)
        .limit(limit)
    )
    if isinstance(current(), peewee.PostgresqlDatabase):
        query = query.for_update(skip_locked=True)
    return list(query)


@dataclass(frozen=True)
class Outcome:
    """What carrying out one delivery did."""

    webhook_id: str
    state: str
    server_id: int | None = None
    created: bool = False
    #: The customer's ready server received new credentials: re-inject them.
    reinject: bool = False
    code: str | None = None
    message: str | None = None
    #: The server row as written (a created one is queued without reading it back).
    server: Server | None = field(default=None, repr=False, compare=False)


def record_outcomes(outcomes: Sequence[Outcome], now: datetime) -> None:
    """Every outcome onto its delivery, the payload erased, in one statement."""
    if not outcomes:
        return
    key = WebhookDelivery.webhook_id
    ids = [o.webhook_id for o in outcomes]

    def case(value: Callable[[Outcome], Any]) -> Any:
        values = [value(o) for o in outcomes]
        if all(v == values[0] for v in values):
            # One value for all (the usual case): a plain one, also because a
            # CASE of NULLs only would be text to PostgreSQL, not the column's type.
            return values[0]
        return peewee.Case(key, list(zip(ids, values, strict=True)))

    WebhookDelivery.update(
        state=case(lambda o: o.state),
        payload=None,
        server_id=case(lambda o: o.server_id),
        created_server=case(lambda o: o.created if o.state == DONE else None),
        outcome_code=case(lambda o: o.code),
        outcome=case(lambda o: o.message),
        processed_at=now,
    ).where(key.in_(ids)).execute()


def open_order(delivery: WebhookDelivery, ring: KeyRing) -> DeployOrder | Outcome:
    """The deploy a delivery asks for, or the `failed` outcome when it cannot be read."""
    wid = delivery.webhook_id
    try:
        payload = reveal(ring, delivery, "payload")
        if payload is None:
            return Outcome(
                wid, FAILED, code="payload_missing", message="the request was not stored"
            )
        order = msgspec.json.decode(payload, type=DeployOrder)
        register_order_secrets(order)
        return order
    except (CryptoError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        # A wrong key ring or a tampered row: the operator sees why, nothing retries it.
        return Outcome(wid, FAILED, code="payload_unreadable", message=str(exc))


def pending(older_than: datetime | None = None) -> int:
    """How many deploys wait to be carried out (received before `older_than`)."""
    query = WebhookDelivery.select().where(WebhookDelivery.state == ACCEPTED)
    if older_than is not None:
        query = query.where(WebhookDelivery.received_at < older_than)
    count: int = query.count()
    return count


def find(webhook_id: str) -> WebhookDelivery | None:
    """The deploy delivery with this id, if there is one."""
    row: WebhookDelivery | None = WebhookDelivery.get_or_none(
        (WebhookDelivery.webhook_id == webhook_id) & (WebhookDelivery.kind == KIND)
    )
    return row
