"""The warm pool: the pure decisions.

A pool server is a VPS made ahead of any deploy, from the image of the
fleet's current release, booted and called back (its host key pinned), with
no customer and no secret. A deploy for the (location, server type) the pool
holds claims a `warm` one and goes straight to injecting its secrets; a miss
takes the image path. Decided here, without I/O: how many servers the pool
wants (min, max, and an adaptive target from the recent deploy rate and the
time a refill takes), which to create, which to recycle (an older release,
surplus, stuck, or all of them when the pool is disabled), and the labels
the reconciler reads.

States: `creating` (its row exists, the create may be in flight) ->
`booting` (the VPS exists, its callback awaited) -> `warm` -> `claimed`
(a Server row took the VPS over: no longer the pool's). Any of creating,
booting, warm -> `recycling` (its VPS is to be deleted) -> `deleted`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from core.cloud.provider import LABEL_ENV, LABEL_MANAGED
from core.platform.pool_settings import PoolPlace

#: On a pool server: the id of its pool row (no customer label, ever).
LABEL_POOL = "rachel-cloud/pool"


class PoolState(StrEnum):
    """Where a pool server is in its life."""

    CREATING = "creating"
    BOOTING = "booting"
    WARM = "warm"
    CLAIMED = "claimed"
    RECYCLING = "recycling"
    DELETED = "deleted"


#: The states of a server the pool still owns and counts (made, or being made).
IN_POOL = (PoolState.CREATING, PoolState.BOOTING, PoolState.WARM)
#: The states in which the pool's row owns a VPS on Hetzner (or may: a create in flight).
OWNS_VPS = (*IN_POOL, PoolState.RECYCLING)

Place = tuple[str, str]
"""A (location, server type) pair: what the pool is sized and claimed by."""


@dataclass(frozen=True)
class PoolServerView:
    """What the decisions need of a pool row."""

    id: int
    state: str
    location: str
    server_type: str
    commit: str
    created_at: datetime
    deadline_at: datetime | None = None
    warm_at: datetime | None = None
    provider_id: int | None = None
    server_id: int | None = None  # the Server that claimed it

    @property
    def place(self) -> Place:
        """Its (location, server type)."""
        return (self.location, self.server_type)


@dataclass(frozen=True)
class PoolSize:
    """The bounds of the pool at one place: the adaptive target stays within them."""

    minimum: int
    maximum: int

    def clamp(self, wanted: int) -> int:
        """`wanted` within the bounds; a maximum below the minimum yields to it."""
        return max(self.minimum, min(max(self.minimum, self.maximum), wanted))


@dataclass(frozen=True)
class Recycle:
    """A pool server to recycle (delete), and why (its Event says it)."""

    id: int
    reason: str


@dataclass(frozen=True)
class PoolPlan:
    """One refill pass's decisions."""

    create: list[Place]
    recycle: list[Recycle]


@dataclass(frozen=True)
class PlaceStatus:
    """One place of the pool as operators see it (`rachel-cloud pool list`, the TUI).

    Attributes:
        location: where its servers are made.
        server_type: what they are.
        warm: its warm servers (a deploy there claims one).
        making: its servers being made (creating or booting).
        target: how many it wants now (`target_size`).
        size: its bounds.
    """

    location: str
    server_type: str
    warm: int
    making: int
    target: int
    size: PoolSize


def place_statuses(
    servers: Sequence[PoolServerView],
    targets: Mapping[Place, int],
    sizes: Mapping[Place, PoolSize],
) -> list[PlaceStatus]:
    """Each place of `sizes` (in its order): its warm servers, those being made, its target."""
    statuses = []
    for place, size in sizes.items():
        here = [s for s in servers if s.place == place]
        warm = sum(s.state == PoolState.WARM for s in here)
        making = sum(s.state in (PoolState.CREATING, PoolState.BOOTING) for s in here)
        statuses.append(PlaceStatus(*place, warm, making, targets[place], size))
    return statuses


def pool_name(prefix: str, pool_id: int) -> str:
    """A pool server's name (unique per pool row, apart from customers' and builders')."""
    return f"{prefix}-pool-{pool_id}"


def pool_labels(pool_id: int, env: str) -> dict[str, str]:
    """A pool server's labels: ours (managed, env), the pool row's, no customer."""
    return {LABEL_MANAGED: "true", LABEL_ENV: env, LABEL_POOL: str(pool_id)}


def pool_row_of(labels: Mapping[str, str]) -> int | None:
    """The pool row a server's labels name; None for any other server."""
    value = labels.get(LABEL_POOL, "")
    return int(value) if value.isdigit() else None


def pool_sizes(
    listed: Sequence[PoolPlace], default_place: Place, default_size: PoolSize
) -> dict[Place, PoolSize]:
    """The places the pool holds and each one's bounds (RACHEL_POOL_PLACES).

    A place listed without bounds takes `default_size` (RACHEL_POOL_MIN and
    RACHEL_POOL_MAX); none listed: `default_place` (the placement a deploy
    gets unless it names one) alone.
    """
    if not listed:
        return {default_place: default_size}
    return {
        (p.location, p.server_type): PoolSize(
            default_size.minimum if p.minimum is None else p.minimum,
            default_size.maximum if p.maximum is None else p.maximum,
        )
        for p in listed
    }


def serving_size(expected: float, service_level: float, limit: int) -> int:
    """The fewest servers that serve `service_level` of deploys from the pool.

    Each claim starts a replacement at once, which is warm a refill time
    later, so a pool of S servers (warm, or being made) runs dry exactly
    when S or more deploys arrive within one refill time. Deploys arrive
    independently of each other: their count in a refill time is Poisson,
    with mean `expected` (the rate times the refill time). A deploy is
    served when fewer than S came before it in that time: the fill rate is
    P(N <= S - 1), and the size is the smallest S where it reaches
    `service_level` (the base-stock rule of inventory theory). The mean
    alone (`ceil(expected)`) leaves nothing warm half of the time.

    Returns:
        That S, at most `limit` (0 when no deploy is expected).
    """
    if expected <= 0:
        return 0
    term = cumulative = math.exp(-expected)  # P(N = 0)
    size = 1
    while cumulative < service_level and size < limit:
        term *= expected / size  # P(N = size) from P(N = size - 1)
        cumulative += term
        size += 1
    return size


def target_size(
    size: PoolSize,
    deploys: int,
    window_seconds: float,
    refill_seconds: float,
    service_level: float,
) -> int:
    """How many servers the pool wants at one place (warm, or being made).

    The recent deploy rate (`deploys` within `window_seconds`) times the
    refill time is how many deploys arrive while one replacement is made;
    `serving_size` turns that into the servers that serve `service_level`
    of them, within the bounds.
    """
    if window_seconds <= 0:
        return size.clamp(0)
    expected = max(0, deploys) / window_seconds * max(0.0, refill_seconds)
    return size.clamp(serving_size(expected, service_level, max(size.minimum, size.maximum)))


def refill_time(servers: Iterable[PoolServerView], default: float) -> float:
    """The measured time from create to warm (the median of those that made it), else
    `default` (the setting, until the pool has made some)."""
    took = sorted(
        (s.warm_at - s.created_at).total_seconds() for s in servers if s.warm_at is not None
    )
    if not took:
        return default
    middle = len(took) // 2
    return took[middle] if len(took) % 2 else (took[middle - 1] + took[middle]) / 2


def _recycling_reason(
    server: PoolServerView, commit: str, enabled: bool, places: Sequence[Place], now: datetime
) -> str | None:
    if not enabled:
        return "the pool is disabled (RACHEL_POOL=false): draining"
    if server.place not in places:
        return f"the pool no longer holds {server.location}/{server.server_type}"
    if server.commit != commit:
        return f"it holds release {server.commit[:12]}, the fleet's is now {commit[:12]}"
    stuck = server.state in (PoolState.CREATING, PoolState.BOOTING)
    if stuck and server.deadline_at is not None and now >= server.deadline_at:
        return f"still {server.state} past its deadline"
    return None


def plan(
    servers: Sequence[PoolServerView],
    targets: Mapping[Place, int],
    commit: str,
    *,
    enabled: bool,
    now: datetime,
) -> PoolPlan:
    """What one refill does: the servers to create (one place per server) and to recycle.

    Recycled: every server when the pool is disabled (it drains); one at a
    place the pool no longer holds, of another release than `commit`, or
    stuck creating or booting past its deadline; and warm servers beyond the
    target (the oldest first: the target fell with the deploy rate, and idle
    servers cost money). Created: what each place lacks of its target,
    counting servers still being made (they will be warm soon). Only states
    the pool owns count; claimed servers are customers' now.
    """
    places = list(targets)
    owned = [s for s in servers if s.state in IN_POOL]
    recycle = [
        Recycle(s.id, why)
        for s in owned
        if (why := _recycling_reason(s, commit, enabled, places, now)) is not None
    ]
    doomed = {r.id for r in recycle}
    kept = [s for s in owned if s.id not in doomed]
    for place in places:
        here = [s for s in kept if s.place == place]
        surplus = len(here) - targets[place]
        warm = sorted(
            (s for s in here if s.state == PoolState.WARM), key=lambda s: (s.created_at, s.id)
        )
        for server in warm[: max(0, surplus)]:
            recycle.append(Recycle(server.id, f"surplus: the pool wants {targets[place]} here"))
            doomed.add(server.id)
    if not enabled:
        return PoolPlan(create=[], recycle=recycle)
    counted = Counter(s.place for s in kept if s.id not in doomed)
    create = [place for place in places for _ in range(targets[place] - counted[place])]
    return PoolPlan(create=create, recycle=recycle)


def vanished(servers: Sequence[PoolServerView], on_hetzner: set[int]) -> list[Recycle]:
    """Pool servers whose VPS Hetzner no longer lists (deleted by hand, a lost project).

    `servers` must be read before `on_hetzner` was listed: a row that recorded
    its VPS then had it on Hetzner already. Such a server must never be
    claimed (the deploy would wait on an address nobody answers): recycled.
    """
    return [
        Recycle(s.id, f"its VPS {s.provider_id} is gone from Hetzner")
        for s in servers
        if s.state in IN_POOL and s.provider_id is not None and s.provider_id not in on_hetzner
    ]


def pool_finding(server: PoolServerView | None, provider_id: int) -> str | None:
    """Why a VPS labelled as pool server should go; None while the pool owns it.

    The pool owns it while its row is in a state that owns a VPS and records
    this VPS, or none yet (the create is in flight). A claimed row's VPS is
    its Server's (the reconciler judges it as that server's, by `server_id`).
    """
    if server is None:
        return "its pool row does not exist"
    if server.state == PoolState.CLAIMED and server.server_id is not None:
        return None
    if server.state not in OWNS_VPS:
        return f"pool server {server.id} is {server.state}"
    if server.provider_id is not None and server.provider_id != provider_id:
        return f"pool server {server.id} records VPS {server.provider_id}; a duplicate"
    return None
