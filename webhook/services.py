"""What each endpoint does, composed from `core` services (no Litestar here).

These functions run in worker threads (peewee is synchronous), but for the
deploy, which awaits the process's intake writer. Database work happens in
one transaction per request; jobs are enqueued only after it committed,
through the context's `WorkQueue` (`core.domain.work`), the web app's only
way to the job system.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from typing import Generic, TypeVar
from urllib.parse import quote

import msgspec
import peewee
import redis
from litestar.concurrency import sync_to_thread

from core.domain import customers, deliveries, intake, subscriptions
from core.domain.callbacks import accept_callback
from core.domain.deploy_order import DeployInput, OAuthTriple, check_order
from core.domain.deploys import live_server
from core.domain.events import redis_publisher
from core.domain.image_store import accept_build_callback
from core.domain.install_outcome import InstallOutcome
from core.domain.intake import Submission
from core.domain.lifecycle import STAMP_COLUMN, Status
from core.domain.pool_store import accept_pool_callback
from core.security.redaction import redact
from core.store.db import connection, current, write_transaction
from core.store.models import Customer, Server
from webhook.context import WebContext
from webhook.errors import not_found
from webhook.health_services import health_of
from webhook.structs import (
    CallbackAccepted,
    CloudInitCallback,
    DeployAccepted,
    DeployRequest,
    DeployStatus,
    Drift,
    ImageCallbackAccepted,
    InstallReport,
    PhaseTiming,
    PoolCallbackAccepted,
    ServerStatus,
    SubscriptionEvent,
    SubscriptionRecorded,
    encode,
)

log = logging.getLogger(__name__)

T = TypeVar("T", bound=msgspec.Struct)
_ATTEMPTS = 3
#: The phases shown with timings, in order, and the column stamped on entering each.
_PHASES = (Status.PENDING, Status.CREATING, Status.CLOUD_INIT, Status.INJECTING_SECRETS)


@dataclass(frozen=True)
class Answer(Generic[T]):
    """A response body, its status, and whether it is a stored (replayed) answer."""

    body: T
    status: int
    replayed: bool = False


def aware(when: datetime | None) -> datetime | None:
    """A stored (naive UTC) time as an aware one: RFC 3339 with `Z` in responses."""
    return when.replace(tzinfo=UTC) if when is not None else None


def _idempotent(
    webhook_id: str,
    kind: str,
    body: bytes,
    answer_type: type[T],
    work: Callable[[], tuple[T, int]],
) -> Answer[T]:
    """Run `work` once per delivery: a repeated delivery gets the stored answer."""
    digest = deliveries.body_digest(body)
    db = current()
    for _ in range(_ATTEMPTS):
        stored = deliveries.lookup(webhook_id, kind, digest)
        if stored is not None:
            log.info("webhook %s (%s) repeated: stored answer", webhook_id, kind)
            return Answer(
                msgspec.json.decode(stored.body, type=answer_type), stored.code, replayed=True
            )
        try:
            with write_transaction(db):
                result, status = work()
                answer = deliveries.StoredAnswer(status, encode(result))
                deliveries.record(webhook_id, kind, digest, answer)
        except peewee.IntegrityError:
            continue  # a concurrent twin committed first (delivery or customer): look again
        return Answer(result, status)
    raise deliveries.DeliveryConflict(f"webhook {webhook_id} raced with itself; retry it")


async def deploy(
    ctx: WebContext, webhook_id: str, body: bytes, req: DeployRequest
) -> Answer[DeployAccepted]:
    """Check the deploy, store it for the intake job (see `core.domain.intake`), answer 202.

    Rachel8's rules come first, then Telegram's word on the bot token (when
    RACHEL_TELEGRAM_CHECK is on; a valid answer is remembered briefly, so a
    retried delivery rarely asks again), then the store: a refused deploy
    leaves nothing behind.

    Raises:
        ConfigError: 422, a value Rachel8 would refuse, or a token Telegram rejects.
        DeployRefused: 402, the customer has no active subscription.
        DeliveryConflict: 409, the webhook-id was used for another delivery.
        DatabaseError: 503, nothing was stored.
    """
    order = check_order(deploy_input(req), now_ms=int(time.time() * 1000))
    if ctx.telegram is not None:
        await ctx.telegram.check(order.telegram_bot_token, customer_id=req.customer_id)
    accepted = DeployAccepted(
        webhook_id=webhook_id,
        customer_id=req.customer_id,
        status="accepted",
        status_url=deploy_url(ctx, webhook_id),
    )
    digest = deliveries.body_digest(body)
    answer = deliveries.StoredAnswer(202, encode(accepted))
    sealed = msgspec.json.encode(order)
    admission = await ctx.intake.submit(
        Submission(webhook_id, digest, req.customer_id, sealed, answer)
    )
    if admission.verdict == intake.ACCEPTED:
        return Answer(accepted, answer.code)
    if admission.refusal is not None:
        raise admission.refusal
    return await sync_to_thread(_replay, webhook_id, digest)


def deploy_input(req: DeployRequest) -> DeployInput:
    """The webhook's fields as `core.domain.deploy_order.check_order` takes them."""
    oauth = req.claude_oauth
    speech = req.speech_to_text
    return DeployInput(
        customer_id=req.customer_id,
        email=req.email,
        telegram_bot_token=req.telegram_bot_token,
        owner_telegram_user_id=req.owner_telegram_user_id,
        claude_oauth=(
            OAuthTriple(oauth.access_token, oauth.refresh_token, oauth.expires_at, oauth.scopes)
            if oauth is not None
            else None
        ),
        claude_credentials=req.claude_credentials,
        speech_to_text=(speech.provider, speech.api_key) if speech is not None else None,
        location=req.location,
        server_type=req.server_type,
    )


def _replay(webhook_id: str, digest: str) -> Answer[DeployAccepted]:
    with connection():
        stored = deliveries.lookup(webhook_id, intake.KIND, digest)
    if stored is None:  # pruned between the insert and this read: vanishingly rare
        raise deliveries.DeliveryConflict(f"webhook {webhook_id} raced with itself; retry it")
    log.info("webhook %s (deploy) repeated: stored answer", webhook_id)
    body = msgspec.json.decode(stored.body, type=DeployAccepted)
    return Answer(body, stored.code, replayed=True)


def deploy_url(ctx: WebContext, webhook_id: str) -> str:
    """Where a deploy's outcome is shown (the id may hold `/`: it is escaped)."""
    return ctx.url(f"/api/deploys/{quote(webhook_id, safe='')}")


def deploy_status(ctx: WebContext, webhook_id: str) -> DeployStatus:
    """What became of the deploy delivered under `webhook_id`.

    Raises:
        RequestRejected: 404 when no deploy was stored under that id.
    """
    with connection():
        row = intake.find(webhook_id)
    if row is None or row.state is None:
        raise not_found(f"deploy {webhook_id}")
    return DeployStatus(
        webhook_id=row.webhook_id,
        customer_id=row.customer_external_id,
        state=row.state,  # type: ignore[arg-type]  # one of the four, by construction
        received_at=row.received_at.replace(tzinfo=UTC),
        processed_at=aware(row.processed_at),
        server_id=row.server_id,
        created=row.created_server,
        server_url=ctx.url(f"/api/servers/{row.server_id}") if row.server_id else None,
        code=row.outcome_code,
        message=redact(row.outcome) if row.outcome else None,
    )


def subscription(
    ctx: WebContext, webhook_id: str, body: bytes, event: SubscriptionEvent
) -> Answer[SubscriptionRecorded]:
    """Record a subscription status change."""

    def work() -> tuple[SubscriptionRecorded, int]:
        change = subscriptions.record_change(
            event.customer_id,
            event.status,
            event.occurred_at,
            ctx.settings,
            current_period_end=event.current_period_end,
            email=event.email,
        )
        sub = change.subscription
        recorded = SubscriptionRecorded(
            customer_id=event.customer_id,
            status=sub.status,
            applied=change.applied,
            lapsed_at=aware(sub.lapsed_at),
            grace_until=aware(sub.grace_until),
            current_period_end=aware(sub.current_period_end),
        )
        return recorded, 200

    with connection():
        return _idempotent(webhook_id, "subscription", body, SubscriptionRecorded, work)


def install_outcome(report: InstallReport) -> InstallOutcome:
    """The domain's view of a validated install report."""
    return InstallOutcome(
        ok=report.ok,
        failed_step=report.failed_step,
        exit_status=report.exit_status,
        log_tail=report.log_tail,
        cloud_init_status=report.cloud_init.status,
        cloud_init_errors=tuple(report.cloud_init.errors),
        commit=report.commit,
        bun_version=report.versions.bun,
        claude_code_version=report.versions.claude_code,
    )


def callback(
    ctx: WebContext,
    server_id: int,
    token: str,
    data: CloudInitCallback,
    source_ip: str | None,
) -> CallbackAccepted:
    """Accept a cloud-init callback; queue the secret injection, or the failed server's cleanup."""
    report = data.install
    with connection():
        server = accept_callback(
            server_id,
            token,
            data.host_key,
            source_ip,
            publish=redis_publisher(ctx.redis),
            next_job=ctx.work.injection_job_id,
            install=install_outcome(report),
        )
        failed = server.status == Status.FAILED
        try:
            if failed:
                ctx.work.after_failure(ctx.redis, server)
            else:
                ctx.work.after_callback(ctx.redis, server, record=False)
        except redis.RedisError as exc:
            # A lost injection is re-queued by the sweeper; a lost cleanup leaves
            # a VPS the reconciler reports (a failed server keeps its provider id).
            log.warning(
                "server %s: could not queue its %s (%s)",
                server_id,
                "cleanup" if failed else "injection; the sweeper will",
                exc,
                extra={"server_id": server_id},
            )
    if failed:
        return CallbackAccepted(server_id=server.id, status=server.status, reason=server.last_error)
    return CallbackAccepted(server_id=server.id, status=server.status)


def image_callback(
    token: str, image_id: int, data: CloudInitCallback, source_ip: str | None
) -> ImageCallbackAccepted:
    """Accept an image builder's callback (`core.domain.image_store`); the build acts on it."""
    with connection():
        image = accept_build_callback(
            image_id, token, data.host_key, source_ip, install=install_outcome(data.install)
        )
    return ImageCallbackAccepted(image_id=image.id, state=image.state, reason=image.reason)


def pool_callback(
    token: str, pool_id: int, data: CloudInitCallback, source_ip: str | None
) -> PoolCallbackAccepted:
    """Accept a warm pool server's callback (`core.domain.pool_store`): it is warm now."""
    with connection():
        row = accept_pool_callback(
            pool_id, token, data.host_key, source_ip, install=install_outcome(data.install)
        )
    return PoolCallbackAccepted(pool_id=row.id, state=row.state, reason=row.reason)


def server_status(ctx: WebContext, server_id: int) -> ServerStatus:
    """The status of one server.

    Raises:
        RequestRejected: 404 when there is no such server.
    """
    with connection():
        server: Server | None = Server.get_or_none(Server.id == server_id)
        if server is None:
            raise not_found(f"server {server_id}")
        return _status(ctx, server, server.customer.external_id)


def customer_server(ctx: WebContext, external_id: str) -> ServerStatus:
    """The customer's live server, else their most recent one.

    Raises:
        RequestRejected: 404 when the customer is unknown or never had a server.
    """
    with connection():
        customer: Customer | None = customers.find(external_id)
        if customer is None:
            raise not_found(f"customer {external_id}")
        server = live_server(customer) or (
            Server.select().where(Server.customer == customer).order_by(Server.id.desc()).first()
        )
        if server is None:
            raise not_found(f"server of customer {external_id}")
        return _status(ctx, server, external_id)


def _phases(server: Server) -> list[PhaseTiming]:
    marks: list[tuple[str, datetime | None]] = [("pending", server.created_at)]
    marks += [(s.value, getattr(server, STAMP_COLUMN[s])) for s in _PHASES[1:]]
    marks.append(("ready", server.ready_at))
    timings = []
    for (phase, started), (_, finished) in pairwise(marks):
        if started is None:
            continue
        done = finished if finished is not None and finished >= started else None
        seconds = round((done - started).total_seconds(), 3) if done is not None else None
        timings.append(
            PhaseTiming(
                phase=phase,
                started_at=started.replace(tzinfo=UTC),
                finished_at=aware(done),
                seconds=seconds,
            )
        )
    return timings


def _status(ctx: WebContext, server: Server, external_id: str) -> ServerStatus:
    sla = ctx.settings.sla_seconds
    seconds = server.provisioning_seconds
    health = health_of(ctx, server)
    return ServerStatus(
        id=server.id,
        customer_id=external_id,
        status=server.status,
        name=server.name,
        location=server.location,
        server_type=server.server_type,
        ipv4=server.ipv4,
        ipv6=server.ipv6,
        attempt=server.attempt,
        created_at=server.created_at.replace(tzinfo=UTC),
        updated_at=server.updated_at.replace(tzinfo=UTC),
        ready_at=aware(server.ready_at),
        provisioning_seconds=seconds,
        sla_seconds=sla,
        within_sla=None if seconds is None else seconds <= sla,
        phases=_phases(server),
        failed_phase=server.failed_phase,
        last_error=redact(server.last_error) if server.last_error else None,
        status_url=ctx.url(f"/api/servers/{server.id}"),
        events_url=ctx.url(f"/api/servers/{server.id}/events"),
        health=health.health,
        uptime_30d_percent=health.uptime_30d_percent,
        last_heartbeat_at=health.last_heartbeat_at,
        drift=Drift(kind=server.drift, reason=server.drift_reason or "") if server.drift else None,
    )
