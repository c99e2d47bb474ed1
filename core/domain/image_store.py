"""Snapshot images in the database: the rows' transitions and the builder's callback.

Every change is a compare-and-set on the image's state (two processes cannot
both finish or fail a build) and a fleet Event (no server) of kind `image`,
in one transaction. The builder's callback is authenticated like a server's
(`core.domain.callbacks`): a one-time bearer token, stored hashed, valid until
the build's deadline, only from the builder's address. It records the host
key (pinned: the build connects once more over SSH to clean the builder) and
the install's outcome; the build itself (`jobs.images`) acts on them.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from core.domain.callbacks import (
    ArmedToken,
    hash_token,
    parse_host_key,
    refuse_unless_valid,
    spend_token,
)
from core.domain.images import ImageState, ImageView, for_new_servers
from core.domain.install_outcome import InstallOutcome, failure_reason
from core.domain.lifecycle import validate_actor
from core.domain.releases import current_commit
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.store.db import connection, write_transaction
from core.store.models import Event, Image

log = logging.getLogger(__name__)

#: The Event kind of image changes (fleet Events, no server).
EVENT_KIND = "image"


def view(row: Image) -> ImageView:
    """What the decisions need of a row."""
    return ImageView(
        id=row.id,
        state=row.state,
        commit=row.commit,
        created_at=row.created_at,
        provider_image_id=row.provider_image_id,
        finished_at=row.finished_at,
        deadline_at=row.deadline_at,
        builder_provider_id=row.builder_provider_id,
    )


def live_views() -> list[ImageView]:
    """Every image not deleted (inside `connection()`)."""
    query = Image.select().where(Image.state != ImageState.DELETED.value).order_by(Image.id)
    return [view(row) for row in query]


def starting_image(stock: str, commit: str, enabled: bool) -> str:
    """What a new server of release `commit` is created from (inside `connection()`):
    the id of the newest available image holding it, else the `stock` image's name."""
    found = for_new_servers(live_views(), commit) if enabled else None
    return str(found.provider_image_id) if found is not None else stock


def forget_refused(image: str, why: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """Hetzner refused `image` (a snapshot's id) for a create: its available row is
    marked deleted, so that creates take the next image (the stock image without one).

    A snapshot deleted by hand, or gone with its project, would otherwise fail
    every deploy and every pool refill. Returns whether a row was marked.
    """
    if not is_snapshot(image):
        return False
    with connection():
        row = Image.get_or_none(
            (Image.provider_image_id == int(image)) & (Image.state == ImageState.AVAILABLE.value)
        )
    if row is None:
        return False
    return mark_deleted(row.id, f"Hetzner refused it for a create: {why}", actor, clock)


def is_snapshot(image: str) -> bool:
    """Whether a server's `image` names one of our snapshots (an id) or a stock image."""
    return image.isdigit()


def listing(seed_commit: str, *, include_deleted: bool) -> tuple[list[dict[str, Any]], int | None]:
    """The images as operators see them, newest first, and the id of the one new
    servers start from (None: the stock image)."""
    with connection():
        chosen = for_new_servers(live_views(), current_commit(seed_commit))
        query = Image.select().order_by(Image.id.desc())
        if not include_deleted:
            query = query.where(Image.state != ImageState.DELETED.value)
        fields = ("id", "state", "commit", "provider_image_id", "bun_version",
                  "claude_code_version", "image_size", "created_at", "reason")  # fmt: skip
        rows = [{name: getattr(row, name) for name in fields} for row in query]
    return rows, chosen.id if chosen is not None else None


def record(message: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> None:
    """A fleet Event of kind `image`, in the caller's transaction if any."""
    Event.create(server=None, at=clock.now(), kind=EVENT_KIND, message=message, actor=actor)


def start_build(
    *,
    commit: str,
    bun_version: str,
    claude_code_version: str,
    server_type: str,
    location: str,
    base_image: str,
    timeout: float,
    actor: str,
    why: str,
    clock: Clock = SYSTEM_CLOCK,
) -> Image:
    """A `building` row, its deadline `timeout` seconds from now (no builder, no token yet)."""
    validate_actor(actor)
    now = clock.now()
    deadline = now + timedelta(seconds=timeout)
    with connection() as db, write_transaction(db):
        row: Image = Image.create(
            state=ImageState.BUILDING.value,
            commit=commit,
            bun_version=bun_version,
            claude_code_version=claude_code_version,
            server_type=server_type,
            location=location,
            base_image=base_image,
            requested_by=actor,
            created_at=now,
            updated_at=now,
            deadline_at=deadline,
        )
        record(
            f"image {row.id}: building Rachel8 {commit[:12]} (Bun {bun_version}, Claude Code "
            f"{claude_code_version}) on a {server_type} in {location} from {base_image}: {why}",
            actor,
            clock,
        )
    return row


def _update(image_id: int, state: ImageState, changes: dict[str, object]) -> bool:
    changes = {**changes, "updated_at": changes.get("updated_at") or SYSTEM_CLOCK.now()}
    return bool(
        Image.update(**changes)
        .where((Image.id == image_id) & (Image.state == state.value))
        .execute()
    )


def arm_token(image_id: int, token: str) -> bool:
    """The builder's one-time callback token (stored hashed), valid until the deadline."""
    with connection():
        row: Image | None = Image.get_or_none(Image.id == image_id)
        if row is None:
            return False
        return _update(
            image_id,
            ImageState.BUILDING,
            {
                "callback_token_hash": hash_token(token),
                "callback_token_expires_at": row.deadline_at,
            },
        )


def record_builder(image_id: int, provider_id: int, ipv4: str | None) -> bool:
    """The builder server exists: remember it (so nothing can lose it)."""
    with connection():
        return _update(
            image_id,
            ImageState.BUILDING,
            {"builder_provider_id": provider_id, "builder_ipv4": ipv4},
        )


def mark_available(
    image_id: int,
    provider_image_id: int,
    image_size: float | None,
    disk_size: float | None,
    clock: Clock = SYSTEM_CLOCK,
) -> bool:
    """building -> available, with its snapshot."""
    now = clock.now()
    with connection() as db, write_transaction(db):
        moved = _update(
            image_id,
            ImageState.BUILDING,
            {
                "state": ImageState.AVAILABLE.value,
                "provider_image_id": provider_image_id,
                "image_size": image_size,
                "disk_size": disk_size,
                "available_at": now,
                "callback_token_hash": None,
                "updated_at": now,
            },
        )
        if moved:
            record(
                f"image {image_id}: available as Hetzner snapshot {provider_image_id} "
                f"({image_size or '?'} GB)",
                "system",
                clock,
            )
    return moved


def mark_failed(image_id: int, reason: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """building -> failed, with the reason (the caller deletes the builder)."""
    now = clock.now()
    with connection() as db, write_transaction(db):
        moved = _update(
            image_id,
            ImageState.BUILDING,
            {
                "state": ImageState.FAILED.value,
                "reason": reason,
                "finished_at": now,
                "callback_token_hash": None,
                "updated_at": now,
            },
        )
        if moved:
            record(f"image {image_id}: build failed: {reason}", actor, clock)
    return moved


def mark_deleted(image_id: int, reason: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """available -> deleted (its snapshot is gone from Hetzner)."""
    now = clock.now()
    with connection() as db, write_transaction(db):
        moved = _update(
            image_id,
            ImageState.AVAILABLE,
            {"state": ImageState.DELETED.value, "reason": reason, "finished_at": now,
             "updated_at": now},
        )  # fmt: skip
        if moved:
            record(f"image {image_id}: deleted: {reason}", actor, clock)
    return moved


def accept_build_callback(
    image_id: int,
    token: str,
    host_key: str,
    source_ip: str | None,
    *,
    install: InstallOutcome,
    check_source: bool = True,
    clock: Clock = SYSTEM_CLOCK,
) -> Image:
    """Verify a builder's callback and record it: its host key and the install's outcome.

    The install's failure (or another commit than the image's) is kept as the
    row's `reason`; the build fails the image on reading it.

    Raises:
        CallbackRejected: `unauthorized` unknown image, or wrong, used, expired or
            foreign token (one message for all); `invalid_host_key`.
    """
    now = clock.now()
    row, armed = refuse_unless_valid(
        f"image {image_id} (builder)",
        token,
        Image.get_or_none(Image.id == image_id),
        lambda r: ArmedToken(
            r.callback_token_hash,
            r.callback_token_expires_at,
            spent=r.state != ImageState.BUILDING,
            address=r.builder_ipv4,
        ),
        now,
        source_ip=source_ip,
        check_source=check_source,
    )
    pinned = parse_host_key(host_key)
    reason = failure_reason(install, row.commit)
    with connection() as db, write_transaction(db):
        changes = {
            "builder_host_key": pinned,
            "called_back_at": now,
            "reason": reason,
            "bun_version": install.bun_version or row.bun_version,
            "claude_code_version": install.claude_code_version or row.claude_code_version,
            "updated_at": now,
        }
        spend_token(
            Image,
            image_id,
            state=ImageState.BUILDING.value,
            stored=armed.stored_hash,
            changes=changes,
        )
        outcome = f"install failed: {reason}" if reason else f"{install.describe()} installed"
        record(f"image {image_id}: the builder called back; {outcome}", "system", clock)
    log.info("image %s: builder called back (%s)", image_id, outcome)
    found: Image = Image.get_by_id(image_id)
    return found
