"""What the pool screen reads: the pool's places and servers, the images, what they cost.

Blocking database reads for the TUI's worker threads, returned as frozen plain
values (no Textual, no model instances): the screen compares one read with the
last and redraws only what changed. Each place's target is not computed here:
the composition root hands in what `jobs.pool.status` says (the refill's own
rule), and the images as `core.domain.image_store.listing` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from core.domain.pool import PlaceStatus, PoolState
from core.domain.pool_metrics import PoolSnapshot, collect_pool
from core.store.db import connection
from core.store.models import PoolServer
from tui.reads import build, redacted


@dataclass(frozen=True)
class PoolServerInfo:
    """A pool server not deleted, as the pool screen lists it."""

    id: int
    state: str
    location: str
    server_type: str
    provider_id: int | None
    commit: str
    server_id: int | None  # the Server that claimed it
    created_at: datetime
    reason: str | None  # why it is being recycled (redacted)


@dataclass(frozen=True)
class ImageInfo:
    """An image not deleted, as the pool screen lists it."""

    id: int
    state: str
    commit: str
    size_gb: float | None
    created_at: datetime
    reason: str | None  # why it failed (redacted)
    current: bool  # the one new servers (and pool servers) start from


@dataclass(frozen=True)
class PoolData:
    """One read of the pool screen.

    Attributes:
        places: each place the pool holds; None when the pool is off (RACHEL_POOL=false).
        servers: the pool servers not deleted, newest first.
        images: the images not deleted, newest first.
        costs: the billed pool servers' idle cost and the available images' storage.
    """

    places: tuple[PlaceStatus, ...] | None
    servers: tuple[PoolServerInfo, ...]
    images: tuple[ImageInfo, ...]
    costs: PoolSnapshot


def pool_servers() -> list[PoolServerInfo]:
    """The pool servers not deleted, newest first (inside `connection()`).

    Only the columns shown are read (never the sealed key).
    """
    columns = [getattr(PoolServer, f.name) for f in fields(PoolServerInfo)]
    query: Any = (
        PoolServer.select(*columns)
        .where(PoolServer.state != PoolState.DELETED.value)
        .order_by(PoolServer.id.desc())
        .dicts()
    )
    return [build(PoolServerInfo, row, reason=redacted(row["reason"])) for row in query]


def image_infos(rows: Sequence[Mapping[str, Any]], current: int | None) -> list[ImageInfo]:
    """The images of `listing`'s rows, in their order (`current`: the id new servers use)."""
    infos = []
    for row in rows:
        reason = redacted(row["reason"])
        infos.append(build(ImageInfo, row, size_gb=row["image_size"], reason=reason,
                           current=row["id"] == current))  # fmt: skip
    return infos


def read_pool(
    places: Sequence[PlaceStatus] | None,
    images: tuple[Sequence[Mapping[str, Any]], int | None],
    prices: Mapping[str, float],
    snapshot_price: float,
) -> PoolData:
    """The pool screen's data.

    Args:
        places: as `jobs.pool.status` says (None: the pool is off).
        images: as `core.domain.image_store.listing` lists them: the rows, and the
            id of the image new servers start from.
        prices: RACHEL_PRICES (EUR a month per server type).
        snapshot_price: RACHEL_SNAPSHOT_PRICE (EUR per GB-month).
    """
    with connection():
        servers = pool_servers()
        costs = collect_pool(prices, snapshot_price)
    return PoolData(
        places=None if places is None else tuple(places),
        servers=tuple(servers),
        images=tuple(image_infos(*images)),
        costs=costs,
    )
