"""The warm pool settings: servers made ahead so a deploy need not wait for a create.

Declared apart from `core.platform.settings` (which inherits them, as it does
`core.platform.image_settings`); documented and parsed like every other setting.
The pool holds the default placement (the first of RACHEL_LOCATION and of
RACHEL_SERVER_TYPE): the (location, server type) a deploy gets unless it names one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from core.platform.settings_parsing import (
    parse_bool,
    parse_float,
    parse_int,
    parse_list,
    parse_period,
)
from core.platform.settings_spec import DeclaredSettings, setting


def parse_prices(text: str) -> Mapping[str, float]:
    """`server_type=EUR per month` pairs (empty: no prices known)."""
    prices: dict[str, float] = {}
    for item in parse_list(text):
        name, sep, amount = item.partition("=")
        name = name.strip().lower()
        try:
            value = float(amount)
        except ValueError:
            value = math.nan
        if not sep or not name or not math.isfinite(value) or value < 0:
            raise ValueError(f"expected server_type=monthly price pairs, got {item!r}")
        if name in prices:
            raise ValueError(f"{name} is priced more than once")
        prices[name] = value
    # Read-only, so that the frozen settings cannot be changed through it.
    return MappingProxyType(prices)


@dataclass(frozen=True, kw_only=True)
class PoolSettings(DeclaredSettings):
    """How big the warm pool is and how it is kept (`core.domain.pool`, `jobs.pool`)."""

    pool_enabled: bool = setting(
        "RACHEL_POOL",
        "false",
        "Keep a warm pool of servers made ahead (booted, called back, no customer, no "
        "secret) that deploys claim; off: the pool drains (its servers are deleted). Each "
        "pool server is billed like a customer's.",
        parse_bool,
    )
    pool_min: int = setting(
        "RACHEL_POOL_MIN",
        "1",
        "The fewest warm servers the pool keeps, whatever the deploy rate.",
        parse_int(0, 100),
    )
    pool_max: int = setting(
        "RACHEL_POOL_MAX",
        "5",
        "The most servers the pool holds, however high the deploy rate (caps the idle cost).",
        parse_int(0, 100),
    )
    pool_window_seconds: float = setting(
        "RACHEL_POOL_WINDOW",
        "15m",
        "The recent period whose deploy rate sizes the pool: target = ceil(rate x refill "
        "time), between RACHEL_POOL_MIN and RACHEL_POOL_MAX.",
        parse_period,
    )
    pool_refill_seconds: float = setting(
        "RACHEL_POOL_REFILL_TIME",
        "2m",
        "How long a refill takes (create to warm) until the pool has measured it: the "
        "adaptive target uses the recent pool servers' own time once there are some.",
        parse_period,
    )
    pool_interval_seconds: float = setting(
        "RACHEL_POOL_INTERVAL",
        "30s",
        "How often the scheduled pool refill runs: pool servers made, recycled (an older "
        "release, surplus, stuck) and deleted.",
        parse_period,
    )
    server_prices: Mapping[str, float] = setting(
        "RACHEL_PRICES",
        "",
        "What each server type costs per month (EUR, as your Hetzner price list says, e.g. "
        "`cx23=4.49,cx33=7.49`): the pool's idle cost in /metrics and the TUI (per hour: "
        "the monthly price / 730). Empty: the idle servers are counted, not priced.",
        parse_prices,
    )
    snapshot_price_gb_month: float = setting(
        "RACHEL_SNAPSHOT_PRICE",
        "0",
        "What snapshot storage costs per GB and month (EUR, your Hetzner price list): the "
        "images' storage cost in /metrics and the TUI (0: the size is shown, not priced).",
        parse_float(0, 1000),
    )
