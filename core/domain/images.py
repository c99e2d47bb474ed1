"""Snapshot images of the fleet's release: the pure decisions.

An image is a Hetzner snapshot of a builder server on which the stock
install ran (`core.cloud.cloudinit`): the Rachel8 release, Bun, Claude Code,
the user, the unit. New servers start from the newest available image of
the fleet's current release, with only the per-server part of cloud-init;
without one, from the stock image (the fallback). Decided here, without
I/O: which image a new server uses, whether the current release needs a
build, which builds are stale, which images retention deletes, and the
labels of builders and snapshots (which the reconciler reads).

States: `building` (its builder exists or is being made) -> `available` |
`failed`; `available` -> `deleted`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from core.cloud.provider import LABEL_ENV, LABEL_MANAGED

#: On a builder server: the id of the image row it builds.
LABEL_BUILDER = "rachel-cloud/builder"
#: On a snapshot: the image row's id, the release and tool versions it holds.
LABEL_IMAGE = "rachel-cloud/image"
LABEL_COMMIT = "rachel-cloud/commit"
LABEL_BUN = "rachel-cloud/bun"
LABEL_CLAUDE_CODE = "rachel-cloud/claude-code"


class ImageState(StrEnum):
    """Where an image is in its life."""

    BUILDING = "building"
    AVAILABLE = "available"
    FAILED = "failed"
    DELETED = "deleted"


@dataclass(frozen=True)
class ImageView:
    """What the decisions need of an image row."""

    id: int
    state: str
    commit: str
    created_at: datetime
    provider_image_id: int | None = None
    finished_at: datetime | None = None
    deadline_at: datetime | None = None
    builder_provider_id: int | None = None


def builder_name(prefix: str, image_id: int) -> str:
    """The builder server's name (unique per image row, apart from customers' servers)."""
    return f"{prefix}-builder-{image_id}"


def builder_labels(image_id: int, env: str) -> dict[str, str]:
    """A builder server's labels: ours (managed, env), a builder of this image, no customer."""
    return {LABEL_MANAGED: "true", LABEL_ENV: env, LABEL_BUILDER: str(image_id)}


def snapshot_labels(
    image_id: int, commit: str, bun: str, claude_code: str, env: str
) -> dict[str, str]:
    """A snapshot's labels: whose it is and what it holds (label values are at most 63)."""
    return {
        LABEL_MANAGED: "true",
        LABEL_ENV: env,
        LABEL_IMAGE: str(image_id),
        LABEL_COMMIT: commit,
        LABEL_BUN: bun,
        LABEL_CLAUDE_CODE: claude_code,
    }


def image_of_builder(labels: dict[str, str]) -> int | None:
    """The image row a server's labels say it builds; None for any other server."""
    value = labels.get(LABEL_BUILDER, "")
    return int(value) if value.isdigit() else None


def for_new_servers(images: Sequence[ImageView], commit: str) -> ImageView | None:
    """The image a new server of release `commit` starts from: the newest available one
    holding it; None when there is none (the stock image is the fallback)."""
    ready = [i for i in images if i.commit == commit and i.state == ImageState.AVAILABLE]
    ready = [i for i in ready if i.provider_image_id is not None]
    return max(ready, key=lambda i: (i.created_at, i.id), default=None)


def build_needed(
    images: Sequence[ImageView], commit: str, now: datetime, retry_after: float
) -> str | None:
    """Why release `commit` needs a build now; None when it does not.

    Not while one is available or building, nor within `retry_after` seconds
    of its last failed build: a build that fails every time (a broken
    release) must not make a builder every few minutes.
    """
    mine = [i for i in images if i.commit == commit]
    if any(i.state in (ImageState.AVAILABLE, ImageState.BUILDING) for i in mine):
        return None
    failed = [i.finished_at or i.created_at for i in mine if i.state == ImageState.FAILED]
    if failed and now < max(failed) + timedelta(seconds=retry_after):
        return None
    if failed:
        return f"release {commit[:12]} has no image; the last build failed, trying again"
    return f"release {commit[:12]} has no image"


def stale_builds(images: Sequence[ImageView], now: datetime) -> list[ImageView]:
    """Builds past their time limit (their process died, or hangs): to fail, builder deleted."""
    return [
        i
        for i in images
        if i.state == ImageState.BUILDING and i.deadline_at is not None and now >= i.deadline_at
    ]


def to_prune(
    images: Sequence[ImageView], keep: int, current_commit: str, in_use: Collection[int]
) -> list[ImageView]:
    """The available images retention deletes, oldest first.

    Kept: the newest `keep`, the newest of the current release (new servers
    start from it), and any an in-flight create names (`in_use`: Hetzner
    image ids; deleting one under a create would fail it).
    """
    ready = sorted(
        (i for i in images if i.state == ImageState.AVAILABLE),
        key=lambda i: (i.created_at, i.id),
        reverse=True,
    )
    kept = {i.id for i in ready[:keep]}
    current = for_new_servers(ready, current_commit)
    if current is not None:
        kept.add(current.id)
    doomed = [i for i in ready if i.id not in kept and i.provider_image_id not in in_use]
    return list(reversed(doomed))


def builder_finding(image: ImageView | None, provider_id: int, now: datetime) -> str | None:
    """Why a builder server (its VPS `provider_id`) should go; None while its build runs.

    A builder belongs to a `building` image that records it (or records none
    yet: the create is in flight) and is within its time limit. Any other is
    left over: its build finished, failed or died.
    """
    if image is None:
        return "its image row does not exist"
    if image.state != ImageState.BUILDING:
        return f"image {image.id} is {image.state}"
    if image.builder_provider_id is not None and image.builder_provider_id != provider_id:
        return f"image {image.id} records builder {image.builder_provider_id}; a duplicate"
    if image.deadline_at is not None and now >= image.deadline_at:
        return f"image {image.id}'s build is past its time limit"
    return None
