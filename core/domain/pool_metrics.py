"""Warm pool and image metrics: what `/metrics` shows of idle capacity and its cost.

- `rachel_cloud_pool_servers{state}` (gauge): pool servers by state (deleted ones not);
- `rachel_cloud_pool_idle_cost_eur{period}` (gauge): what the billed pool servers
  cost per `hour` and per `month` (RACHEL_PRICES);
- `rachel_cloud_pool_unpriced_servers` (gauge): billed pool servers whose type has no price;
- `rachel_cloud_snapshot_storage_gb` and `rachel_cloud_snapshot_storage_cost_eur_month`
  (gauges): the available images' stored size and its cost (RACHEL_SNAPSHOT_PRICE).

Read from the database when `/metrics` is scraped (`collect_pool`, inside
`connection()`); `render_pool` is pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from core.domain import pool_store
from core.domain.costs import IdleCost, pool_idle_cost, snapshot_cost
from core.domain.exposition import Exposition
from core.domain.images import ImageState
from core.domain.pool import PoolState
from core.store.models import Image


@dataclass(frozen=True)
class PoolSnapshot:
    """The pool and image figures of one scrape."""

    by_state: Mapping[str, int]
    idle: IdleCost
    snapshot_gb: float
    snapshot_eur_month: float


def collect_pool(prices: Mapping[str, float], snapshot_price: float) -> PoolSnapshot:
    """Count the pool and the images (inside `connection()`)."""
    servers = pool_store.live_views()
    counted = Counter(s.state for s in servers)
    by_state = {s.value: counted[s.value] for s in PoolState if s != PoolState.DELETED}
    sizes = [
        row.image_size
        for row in Image.select(Image.image_size).where(Image.state == ImageState.AVAILABLE.value)
    ]
    gb, eur = snapshot_cost(sizes, snapshot_price)
    return PoolSnapshot(by_state, pool_idle_cost(servers, prices), gb, eur)


def render_pool(out: Exposition, snap: PoolSnapshot) -> None:
    """Append the pool and image families."""
    out.family("rachel_cloud_pool_servers", "gauge", "Warm pool servers by state.")
    for state, count in sorted(snap.by_state.items()):
        out.sample("rachel_cloud_pool_servers", count, state=state)
    out.family(
        "rachel_cloud_pool_idle_cost_eur",
        "gauge",
        "What the pool's billed servers cost (RACHEL_PRICES), per hour and per month.",
    )
    out.sample("rachel_cloud_pool_idle_cost_eur", round(snap.idle.per_hour, 6), period="hour")
    out.sample("rachel_cloud_pool_idle_cost_eur", round(snap.idle.per_month, 4), period="month")
    out.family(
        "rachel_cloud_pool_unpriced_servers",
        "gauge",
        "Billed pool servers whose server type RACHEL_PRICES does not price.",
    )
    out.sample("rachel_cloud_pool_unpriced_servers", snap.idle.unpriced)
    out.family("rachel_cloud_snapshot_storage_gb", "gauge", "Available images' stored size.")
    out.sample("rachel_cloud_snapshot_storage_gb", round(snap.snapshot_gb, 3))
    out.family(
        "rachel_cloud_snapshot_storage_cost_eur_month",
        "gauge",
        "What the available images' storage costs a month (RACHEL_SNAPSHOT_PRICE).",
    )
    out.sample("rachel_cloud_snapshot_storage_cost_eur_month", round(snap.snapshot_eur_month, 4))
