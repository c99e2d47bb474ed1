"""The warm pool's refill: a scheduled task (RACHEL_POOL_INTERVAL).

One pass (`refill`; `refill_now` runs it under the task's lock, for the
job, the CLI and the TUI): read the pool, the fleet's release and the
recent deploys; decide (`core.domain.pool.plan`) what to recycle and what
to create; then
1. delete the VPS of every server to recycle (and of those left `recycling`
   by an earlier pass or a failed install), marking each `deleted`;
2. create the missing ones: a `creating` row, its own key pair (sealed) and
   one-time callback token (hashed), the per-server user data from the
   current release's image (the stock install without one), a create labelled
   as that pool row's and no customer's; the row then `booting`. Its callback
   (`core.domain.pool_store.accept_pool_callback`, the web app's) makes it
   warm. The job never waits for it: a server that does not call back before
   its deadline is recycled by a later pass.

The pool is not placed by the capacity fallback: a pool server serves one
(location, server type); a refused create leaves the pool short this pass
(deploys then take the image path, which has the fallback), and the row is
recycled at once. Never an orphan: the row exists before the create; a VPS
whose row was recycled is deleted here or, should this process die, by the
reconciler (`core.domain.pool.pool_finding`).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta

import redis

from core.cloud.cloudinit import CloudConfigInput, Rachel8Install, render
from core.cloud.cloudinit_image import render_from_image
from core.cloud.provider import HetznerError
from core.domain import image_store, pool_store
from core.domain.callbacks import hash_token
from core.domain.image_store import is_snapshot, starting_image
from core.domain.pool import (
    Place,
    PlaceStatus,
    PoolPlan,
    PoolServerView,
    PoolSize,
    PoolState,
    place_statuses,
    plan,
    pool_labels,
    pool_row_of,
    pool_sizes,
    refill_time,
    target_size,
)
from core.domain.releases import current_commit
from core.errors import RachelError
from core.platform.runs import RunSummary
from core.security.crypto import generate_ssh_keypair
from core.store.db import connection
from core.store.models import PoolServer, Server
from core.store.vault import seal
from jobs.context import JobContext, context
from jobs.creating import project_objects
from jobs.enqueue import POOL_REFILL_FLAG
from jobs.taskrun import task_run

log = logging.getLogger(__name__)

TOKEN_BYTES = 32


def pool_callback_url(public_url: str, pool_id: int) -> str:
    """Where a pool server reports back."""
    return f"{public_url.rstrip('/')}/callbacks/pool/{pool_id}"


class RefillRunning(RachelError):
    """Another refill pass holds the task's lock: this one did nothing."""

    code = "refill_running"
    transient = True


def refill_pool() -> str:
    """RQ job (cron, and after a claim): one refill pass."""
    ctx = context()
    with contextlib.suppress(redis.RedisError):
        # Cleared before reading: a claim from now on asks for a pass of its own.
        ctx.redis.delete(POOL_REFILL_FLAG)
    try:
        return refill_now(ctx).line()
    except RefillRunning:
        return "skipped: already running"


def refill_now(ctx: JobContext) -> RunSummary:
    """One refill pass under the task's lock (the job's, `rachel-cloud pool refill`'s, the TUI's).

    Returns:
        What the pass found and did (its details name each pool server it acted on).

    Raises:
        RefillRunning: another pass is running (`rachel-cloud cron`'s, say).
    """
    with task_run(ctx.redis, "pool") as summary:
        if summary is None:
            raise RefillRunning("a pool refill is running (rachel-cloud cron); try again")
        refill(ctx, summary)
    return summary


@dataclass(frozen=True)
class PoolReading:
    """What one pass decides from."""

    commit: str
    servers: list[PoolServerView]
    targets: dict[Place, int]


def places(ctx: JobContext) -> dict[Place, PoolSize]:
    """The places the pool holds (RACHEL_POOL_PLACES) and each one's bounds."""
    settings = ctx.settings
    return pool_sizes(
        settings.pool_places,
        (settings.location, settings.server_type),
        PoolSize(settings.pool_min, settings.pool_max),
    )


def status(ctx: JobContext) -> list[PlaceStatus]:
    """Each place's warm servers, those being made, its target and bounds (`pool list`, the TUI)."""
    seen = read(ctx)
    return place_statuses(seen.servers, seen.targets, places(ctx))


def read(ctx: JobContext) -> PoolReading:
    """The pool, the release, and each place's adaptive target."""
    settings = ctx.settings
    now = ctx.clock.now()
    since = now - timedelta(seconds=settings.pool_window_seconds)
    with connection():
        commit = current_commit(settings.rachel8_commit, ctx.clock)
        servers = pool_store.live_views()
        recent = pool_store.recent_views(since)
        targets = {}
        for (location, server_type), size in places(ctx).items():
            # Each place's own: types boot at their own pace, locations differ in load.
            refill_seconds = refill_time(
                [s for s in recent if s.place == (location, server_type)],
                settings.pool_refill_seconds,
            )
            deploys = (
                Server.select()
                .where(
                    (Server.created_at >= since)
                    & (Server.location == location)
                    & (Server.server_type == server_type)
                )
                .count()
            )
            targets[(location, server_type)] = target_size(
                size,
                deploys,
                settings.pool_window_seconds,
                refill_seconds,
                settings.pool_service_level,
            )
    return PoolReading(commit, servers, targets)


def refill(ctx: JobContext, summary: RunSummary) -> PoolPlan:
    """One pass: recycle, delete, create (see the module's docstring)."""
    seen = read(ctx)
    decided = plan(
        seen.servers,
        seen.targets,
        seen.commit,
        enabled=ctx.settings.pool_enabled,
        now=ctx.clock.now(),
    )
    for doomed in decided.recycle:
        summary.found["recycle"] += 1
        with connection():
            pool_store.mark_recycling(doomed.id, doomed.reason, "cron", ctx.clock)
    _delete_recycled(ctx, summary)
    for location, server_type in decided.create:
        _create(ctx, location, server_type, seen.commit, summary)
    return decided


def _delete_recycled(ctx: JobContext, summary: RunSummary) -> None:
    with connection():
        rows = list(PoolServer.select().where(PoolServer.state == PoolState.RECYCLING.value))
    if not rows:
        return
    try:
        # One listing finds the VPS of a row that records none (its create died half-way).
        labelled = {pool_row_of(vps.labels): vps.id for vps in ctx.hetzner.list_managed()}
        for row in rows:
            provider_id = row.provider_id or labelled.get(row.id)
            if provider_id is not None:
                ctx.hetzner.delete_server(provider_id)
            with connection():
                pool_store.mark_deleted(row.id, "cron", ctx.clock)
            summary.acted["delete"] += 1
            summary.details.append(f"pool server {row.id}: VPS {provider_id} deleted")
    except HetznerError as exc:
        summary.errors += 1
        log.error("pool: could not delete a recycled pool server (%s); the next pass tries "
                  "again", exc)  # fmt: skip


def _create(
    ctx: JobContext, location: str, server_type: str, commit: str, summary: RunSummary
) -> None:
    settings = ctx.settings
    with connection():
        image = starting_image(settings.image, commit, settings.images_enabled)
    row = pool_store.start(
        location=location,
        server_type=server_type,
        image=image,
        commit=commit,
        name_prefix=settings.name_prefix,
        timeout=settings.boot_timeout_seconds,
        why=f"the pool wants more at {location}/{server_type}",
        clock=ctx.clock,
    )
    try:
        user_data = _arm(ctx, row)
        firewall_id, key_id = project_objects(ctx)
        created = ctx.hetzner.create_builder(
            name=row.name,
            server_type=server_type,
            image=image,
            location=location,
            user_data=user_data,
            labels=pool_labels(row.id, settings.name_prefix),
            firewall_id=firewall_id,
            ssh_key_id=key_id,
        )
    except HetznerError as exc:
        summary.errors += 1
        if exc.image_refused:
            image_store.forget_refused(image, exc.message, "system", ctx.clock)  # next: another
        with connection():
            pool_store.mark_recycling(row.id, f"create refused: {exc}", "system", ctx.clock)
        log.error("pool server %s: create at %s/%s refused (%s); recycled, the pool stays "
                  "short until a later pass", row.id, location, server_type, exc)  # fmt: skip
        return
    if not pool_store.record_vps(row.id, created.id, created.ipv4, created.ipv6):
        log.warning("pool server %s: recycled while its VPS %s was created; the next pass "
                    "deletes it", row.id, created.id)  # fmt: skip
    summary.acted["create"] += 1
    summary.details.append(f"pool server {row.id}: Hetzner server {created.id} created")


def _arm(ctx: JobContext, row: PoolServer) -> str:
    """Seal the row's key pair, arm its token (until its deadline); its user data."""
    settings = ctx.settings
    pair = generate_ssh_keypair(comment=f"rachel-cloud-pool-{row.id}")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    seal(ctx.keyring, row, "ssh_private_key", pair.private_openssh)
    row.ssh_public_key = pair.public_openssh
    row.callback_token_hash = hash_token(token)
    row.callback_token_expires_at = row.deadline_at
    with connection():
        row.save(
            only=[
                PoolServer.ssh_private_key,
                PoolServer.ssh_public_key,
                PoolServer.callback_token_hash,
                PoolServer.callback_token_expires_at,
            ]
        )
    install = replace(Rachel8Install.from_settings(settings), commit=row.commit)
    rendering = render_from_image if is_snapshot(row.image) else render
    return rendering(
        CloudConfigInput(
            hostname=row.name,
            authorized_key=pair.public_openssh,
            callback_url=pool_callback_url(settings.public_url, row.id),
            callback_token=token,
            install=install,
            heartbeat_interval=settings.heartbeat_interval_seconds,
        )
    )
