"""Snapshot images as jobs: the build job and the scheduled image check.

- `build_image(image_id)`: the build of a `building` row (`jobs.image_build`),
  on the `rc-update` queue (last served: a build is never urgent), with a time
  limit above the build's own.
- `check_images()` (cron, RACHEL_IMAGE_INTERVAL): fails builds past their
  deadline (their process died) and deletes their builders; queues a build
  when the fleet's current release has no image (so a completed rollout, a
  release set by hand and the first start are all covered, with no coupling
  to the rollout code); deletes images beyond RACHEL_IMAGE_KEEP.
- `request_build`: the `building` row of the current release (the CLI's and
  the check's), refused without a stock image to build from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from core.cloud.provider import HetznerError
from core.domain import image_store
from core.domain.images import (
    ImageState,
    ImageView,
    build_needed,
    image_of_builder,
    stale_builds,
    to_prune,
)
from core.domain.lifecycle import Status
from core.domain.pool import PoolState
from core.domain.releases import current_commit
from core.platform.runs import RunSummary
from core.store.db import connection
from core.store.models import Image, PoolServer, Server
from jobs.context import JobContext, context
from jobs.image_build import ImageBuildError, run_build
from jobs.queues import FAILURE_TTL, UPDATE, queue
from jobs.registry import JobFunction
from jobs.taskrun import task_run

log = logging.getLogger(__name__)

#: Statuses whose server may still send (or resend) a create naming its image.
CREATING = (Status.PENDING.value, Status.CREATING.value, Status.CLOUD_INIT.value)


def request_build(ctx: JobContext, *, actor: str, why: str) -> Image:
    """A `building` row for the fleet's current release, with the settings' tools.

    Raises:
        ImageBuildError: no stock image to build from (RACHEL_IMAGE is empty).
    """
    settings = ctx.settings
    if not settings.image.strip():
        raise ImageBuildError("no stock image configured to build from: set RACHEL_IMAGE")
    with connection():
        commit = current_commit(settings.rachel8_commit, ctx.clock)
    return image_store.start_build(
        commit=commit,
        bun_version=settings.rachel8_bun_version,
        claude_code_version=settings.rachel8_claude_code_version,
        server_type=settings.server_type,
        location=settings.location,
        base_image=settings.image,
        timeout=settings.image_build_timeout_seconds,
        actor=actor,
        why=why,
        clock=ctx.clock,
    )


def enqueue_build(connection_: redis.Redis, image_id: int, timeout: float) -> str:
    """Queue the build of image row `image_id`; its job id."""
    jid = f"image{image_id}-build"
    queue(connection_, UPDATE).enqueue(
        JobFunction.BUILD_IMAGE.path,
        image_id,
        job_id=jid,
        result_ttl=3600,
        failure_ttl=FAILURE_TTL,
        job_timeout=int(timeout) + 120,
        description=f"image {image_id}: build",
        meta={"image_id": image_id},
    )
    return jid


def build_image(image_id: int) -> str:
    """RQ job: build image row `image_id` (see `jobs.image_build`)."""
    ctx = context()
    with connection():
        row: Image | None = Image.get_or_none(Image.id == image_id)
    if row is None or row.state != ImageState.BUILDING or row.builder_provider_id is not None:
        # Run twice (RQ is at-least-once): the first run owns the builder.
        return "skipped: not waiting to be built"
    try:
        done = run_build(ctx, image_id)
    except ImageBuildError as exc:
        log.error("%s; the image check tries again after RACHEL_IMAGE_RETRY_AFTER", exc)
        return f"failed: {exc}"
    return f"available as snapshot {done.provider_image_id}"


def check_images() -> str:
    """RQ job (cron): stale builds, a build for the current release, retention."""
    ctx = context()
    with task_run(ctx.redis, "images") as summary:
        if summary is None:
            return "skipped: already running"
        check(ctx, summary)
        return summary.line()


@dataclass(frozen=True)
class _Now:
    commit: str
    images: list[ImageView]


def _read(ctx: JobContext) -> _Now:
    with connection():
        commit = current_commit(ctx.settings.rachel8_commit, ctx.clock)
        return _Now(commit, image_store.live_views())


def check(ctx: JobContext, summary: RunSummary) -> None:
    """One pass of the image check (also `rachel-cloud image check`)."""
    seen = _read(ctx)
    for stale in stale_builds(seen.images, ctx.clock.now()):
        summary.found["stale_build"] += 1
        with connection():
            failed = image_store.mark_failed(
                stale.id, "the build did not finish before its deadline", "cron", ctx.clock
            )
        if failed:
            summary.acted["fail_build"] += 1
            summary.details.append(f"image {stale.id}: build past its deadline, failed")
        _delete_builders(ctx, stale.id, summary)
    if ctx.settings.images_enabled:
        seen = _read(ctx)
        why = build_needed(
            seen.images, seen.commit, ctx.clock.now(), ctx.settings.image_retry_seconds
        )
        if why is not None:
            row = request_build(ctx, actor="cron", why=why)
            enqueue_build(ctx.redis, row.id, ctx.settings.image_build_timeout_seconds)
            summary.acted["build"] += 1
            summary.details.append(f"image {row.id}: {why}; build queued")
    prune(ctx, summary)


def _delete_builders(ctx: JobContext, image_id: int, summary: RunSummary) -> None:
    try:
        for vps in ctx.hetzner.list_managed():
            if image_of_builder(vps.labels) == image_id:
                ctx.hetzner.delete_server(vps.id)
                summary.acted["delete_builder"] += 1
                summary.details.append(f"image {image_id}: builder {vps.id} deleted")
    except HetznerError as exc:
        summary.errors += 1
        log.error("image %s: could not delete its builder (%s); the reconciler will", image_id, exc)


def images_in_use() -> set[int]:
    """The Hetzner images a server or a pool server still being created names (inside
    `connection()`)."""
    query = Server.select(Server.image).where(Server.status.in_(CREATING))
    making = (PoolState.CREATING.value, PoolState.BOOTING.value)
    pooled = PoolServer.select(PoolServer.image).where(PoolServer.state.in_(making))
    names = [row.image for row in query] + [row.image for row in pooled]
    return {int(name) for name in names if str(name).isdigit()}


def prune(ctx: JobContext, summary: RunSummary) -> None:
    """Delete the images beyond RACHEL_IMAGE_KEEP (never one an in-flight create uses)."""
    seen = _read(ctx)
    with connection():
        in_use = images_in_use()
    for image in to_prune(seen.images, ctx.settings.image_keep, seen.commit, in_use):
        assert image.provider_image_id is not None  # available images have one
        try:
            ctx.hetzner.delete_image(image.provider_image_id)
        except HetznerError as exc:
            summary.errors += 1
            log.error("image %s: could not delete snapshot %s (%s); next run tries again",
                      image.id, image.provider_image_id, exc)  # fmt: skip
            continue
        why = f"beyond the newest {ctx.settings.image_keep} (RACHEL_IMAGE_KEEP)"
        with connection():
            image_store.mark_deleted(image.id, why, "cron", ctx.clock)
        summary.acted["delete_image"] += 1
        summary.details.append(
            f"image {image.id}: snapshot {image.provider_image_id} deleted, {why}"
        )
