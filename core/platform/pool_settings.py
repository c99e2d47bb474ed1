"""The warm pool settings: servers made ahead so a deploy need not wait for a create.

Declared apart from `core.platform.settings` (which inherits them, as it does
`core.platform.image_settings`); documented and parsed like every other setting.
The pool holds the places RACHEL_POOL_PLACES lists, each sized by its own
bounds or by RACHEL_POOL_MIN and RACHEL_POOL_MAX; by default the default
placement (the first of RACHEL_LOCATION and of RACHEL_SERVER_TYPE): the
(location, server type) a deploy gets unless it names one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from core.platform.placement_settings import provider_name
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


#: The most servers any one place of the pool may be given.
POOL_BOUND = 100


@dataclass(frozen=True)
class PoolPlace:
    """One (location, server type) the pool holds, with its own bounds if given."""

    location: str
    server_type: str
    minimum: int | None = None  # None: RACHEL_POOL_MIN
    maximum: int | None = None  # None: RACHEL_POOL_MAX

    def __str__(self) -> str:
        """As written in RACHEL_POOL_PLACES: `fsn1/cx23` or `fsn1/cx23=1..5`."""
        where = f"{self.location}/{self.server_type}"
        return where if self.minimum is None else f"{where}={self.minimum}..{self.maximum}"


def _bounds(text: str, item: str) -> tuple[int, int]:
    low, sep, high = text.partition("..")
    try:
        bounds = (int(low), int(high))
    except ValueError:
        bounds = (-1, -1)
    if not sep or not 0 <= bounds[0] <= bounds[1] <= POOL_BOUND:
        raise ValueError(
            f"{item!r}: expected bounds MIN..MAX with 0 <= MIN <= MAX <= {POOL_BOUND}, "
            f"e.g. fsn1/cx23=1..5"
        )
    return bounds


def parse_pool_places(text: str) -> tuple[PoolPlace, ...]:
    """`location/server_type[=MIN..MAX]` items (empty: the default placement only)."""
    places: list[PoolPlace] = []
    for item in parse_list(text):
        where, has_bounds, bounds = item.partition("=")
        location, slash, server_type = where.partition("/")
        if not slash:
            raise ValueError(f"{item!r}: expected location/server_type, e.g. fsn1/cx23")
        place = PoolPlace(provider_name(location, "location"),
                          provider_name(server_type, "server type"))  # fmt: skip
        if any((p.location, p.server_type) == (place.location, place.server_type) for p in places):
            raise ValueError(f"{place.location}/{place.server_type} is listed more than once")
        if has_bounds:
            minimum, maximum = _bounds(bounds.strip(), item)
            place = PoolPlace(place.location, place.server_type, minimum, maximum)
        places.append(place)
    return tuple(places)


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
    pool_places: tuple[PoolPlace, ...] = setting(
        "RACHEL_POOL_PLACES",
        "",
        "Where the pool keeps servers: comma-separated `location/server_type` items, each "
        "with its own bounds if given (`fsn1/cx23=1..5,nbg1/cx23=0..2`), else "
        "RACHEL_POOL_MIN and RACHEL_POOL_MAX. Empty: the default placement (the first of "
        "RACHEL_LOCATION and RACHEL_SERVER_TYPE). A deploy for a place not listed takes the "
        "image path.",
        parse_pool_places,
    )
    pool_min: int = setting(
        "RACHEL_POOL_MIN",
        "1",
        "The fewest warm servers the pool keeps at each place, whatever the deploy rate.",
        parse_int(0, POOL_BOUND),
    )
    pool_max: int = setting(
        "RACHEL_POOL_MAX",
        "5",
        "The most servers the pool holds at each place, however high the deploy rate (caps "
        "the idle cost).",
        parse_int(0, POOL_BOUND),
    )
    pool_service_level: float = setting(
        "RACHEL_POOL_SERVICE_LEVEL",
        "0.95",
        "The share of deploys the pool aims to serve from warm servers: each place wants the "
        "fewest servers that serve it when deploys arrive at the recent rate (Poisson) and "
        "each claim's replacement takes one refill time; higher costs more idle servers "
        "(0.5 to 0.999).",
        parse_float(0.5, 0.999),
    )
    pool_window_seconds: float = setting(
        "RACHEL_POOL_WINDOW",
        "15m",
        "The recent period whose deploy rate sizes the pool (RACHEL_POOL_SERVICE_LEVEL), "
        "between RACHEL_POOL_MIN and RACHEL_POOL_MAX.",
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
