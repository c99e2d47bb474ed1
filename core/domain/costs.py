"""What idle capacity costs: the warm pool's servers and the snapshot images' storage.

Hetzner bills a server from its creation to its deletion, powered on or off,
by the hour up to a monthly cap; a warm pool server is idle capacity paid for
speed. Priced here from the operator's price table (RACHEL_PRICES, monthly
per server type; per hour = monthly / HOURS_PER_MONTH) and the snapshot
price per GB-month (RACHEL_SNAPSHOT_PRICE). Pure: the callers count the rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from core.domain.pool import IN_POOL, PoolServerView, PoolState

#: Hours Hetzner's monthly cap corresponds to (about 365 x 24 / 12).
HOURS_PER_MONTH = 730.0
#: Pool servers that cost money without serving anyone: all but claimed and deleted ones.
BILLED = (*IN_POOL, PoolState.RECYCLING)


@dataclass(frozen=True)
class IdleCost:
    """The pool's idle servers and what they cost.

    Attributes:
        servers: pool servers billed now (being made, warm, or being deleted).
        unpriced: of those, the ones whose server type has no price (not in the sums).
        per_month: EUR a month, were they kept (monthly prices summed).
        per_hour: EUR an hour.
    """

    servers: int
    unpriced: int
    per_month: float

    @property
    def per_hour(self) -> float:
        return self.per_month / HOURS_PER_MONTH


def pool_idle_cost(servers: Iterable[PoolServerView], prices: Mapping[str, float]) -> IdleCost:
    """What the pool's billed servers cost (`prices`: EUR a month per server type)."""
    # A recycling row that never got a VPS (its create was refused) costs nothing; one
    # still creating may have a VPS whose id is not recorded yet: counted.
    billed = [
        s
        for s in servers
        if s.state in BILLED and (s.provider_id is not None or s.state != PoolState.RECYCLING)
    ]
    priced = [prices[s.server_type] for s in billed if s.server_type in prices]
    return IdleCost(len(billed), len(billed) - len(priced), sum(priced))


def snapshot_cost(sizes_gb: Iterable[float | None], price_gb_month: float) -> tuple[float, float]:
    """The snapshots' stored GB and their EUR a month (an unknown size counts 0 GB)."""
    total = sum(size or 0.0 for size in sizes_gb)
    return total, total * price_gb_month
