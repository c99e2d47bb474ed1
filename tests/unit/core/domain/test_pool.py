"""The warm pool's decisions: its adaptive size, what a refill creates and recycles,
and which VPSs labelled as pool servers are the pool's."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from core.cloud.provider import LABEL_CUSTOMER, LABEL_SERVER, ProviderServer
from core.domain.costs import pool_idle_cost, snapshot_cost
from core.domain.pool import (
    PoolServerView,
    PoolSize,
    Recycle,
    plan,
    pool_finding,
    pool_labels,
    pool_row_of,
    pool_sizes,
    refill_time,
    serving_size,
    target_size,
    vanished,
)
from core.domain.reconcile import DbServer, Fix, Kind, diff
from core.platform.pool_settings import PoolPlace, parse_pool_places, parse_prices
from core.platform.settings import Settings

NOW = datetime(2026, 3, 1, 12, 0)
A, B = "a" * 40, "b" * 40
HERE = ("fsn1", "cx23")
THERE = ("nbg1", "cx23")


def pooled(
    id: int, state: str = "warm", commit: str = A, place: tuple[str, str] = HERE,
    age_min: int = 0, **kw: object,
) -> PoolServerView:  # fmt: skip
    created = NOW - timedelta(minutes=age_min)
    return PoolServerView(id, state, place[0], place[1], commit, created, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("deploys", "window", "refill", "expected"),
    [
        (0, 600, 60, 1),  # no deploys: the minimum
        (10, 600, 60, 4),  # one a minute, a one-minute refill: Poisson(1) needs 4 for 95%
        (40, 60, 60, 30),  # 40 a minute, a one-minute refill: capped at the maximum
        (20, 60, 40, 21),  # 13.3 expected during a refill: 21 serve 95%, the mean 14 does not
        (5, 0, 60, 1),  # no window: the minimum
    ],
)
def test_the_target_serves_most_deploys_arriving_during_one_refill(
    deploys: int, window: float, refill: float, expected: int
) -> None:
    assert target_size(PoolSize(1, 30), deploys, window, refill, 0.95) == expected


def _fill_rate(size: int, expected: float) -> float:
    """P(N <= size - 1) for N ~ Poisson(expected), summed plainly."""
    return sum(math.exp(-expected) * expected**k / math.factorial(k) for k in range(size))


@pytest.mark.parametrize("expected", [0.1, 0.5, 1.0, 2.0, 5.0, 13.3, 40.0])
@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_the_serving_size_is_the_smallest_that_reaches_the_service_level(
    expected: float, level: float
) -> None:
    size = serving_size(expected, level, limit=1000)
    assert _fill_rate(size, expected) >= level
    assert size == 1 or _fill_rate(size - 1, expected) < level
    assert serving_size(expected, level, limit=3) == min(size, 3)
    assert serving_size(0.0, level, limit=10) == 0


def test_a_maximum_below_the_minimum_yields_to_the_minimum() -> None:
    assert PoolSize(3, 1).clamp(0) == 3
    assert PoolSize(3, 1).clamp(10) == 3
    assert PoolSize(0, 0).clamp(4) == 0


def test_the_refill_time_is_measured_once_the_pool_made_some() -> None:
    assert refill_time([], 120.0) == 120.0
    assert refill_time([pooled(1, "booting")], 120.0) == 120.0
    made = [pooled(i, warm_at=NOW + timedelta(seconds=s)) for i, s in enumerate((30, 40, 90))]
    assert refill_time(made, 120.0) == 40.0
    assert refill_time(made[:2], 120.0) == 35.0


def test_a_refill_creates_what_each_place_lacks_counting_servers_being_made() -> None:
    servers = [pooled(1), pooled(2, "booting"), pooled(3, "claimed"), pooled(4, "deleted")]
    done = plan(servers, {HERE: 3, THERE: 1}, A, enabled=True, now=NOW)
    assert done.create == [HERE, THERE]
    assert done.recycle == []


def test_servers_of_an_older_release_are_recycled_and_replaced() -> None:
    servers = [pooled(1, commit=B), pooled(2)]
    done = plan(servers, {HERE: 2}, A, enabled=True, now=NOW)
    assert [r.id for r in done.recycle] == [1]
    assert "release bbbbbbbbbbbb" in done.recycle[0].reason
    assert done.create == [HERE]


def test_warm_servers_beyond_the_target_are_recycled_oldest_first() -> None:
    servers = [pooled(1, age_min=30), pooled(2, age_min=10), pooled(3, "booting")]
    done = plan(servers, {HERE: 1}, A, enabled=True, now=NOW)
    assert [r.id for r in done.recycle] == [1, 2]  # the booting one counts toward 1
    assert all("surplus" in r.reason for r in done.recycle)
    assert done.create == []


def test_servers_stuck_past_their_deadline_are_recycled() -> None:
    late = pooled(1, "booting", deadline_at=NOW - timedelta(seconds=1))
    on_time = pooled(2, "creating", deadline_at=NOW + timedelta(seconds=30))
    done = plan([late, on_time], {HERE: 2}, A, enabled=True, now=NOW)
    assert done.recycle == [Recycle(1, "still booting past its deadline")]
    assert done.create == [HERE]


def test_a_disabled_pool_drains_and_creates_nothing() -> None:
    servers = [pooled(1), pooled(2, "booting"), pooled(3, "creating"), pooled(4, "claimed")]
    done = plan(servers, {HERE: 2}, A, enabled=False, now=NOW)
    assert [r.id for r in done.recycle] == [1, 2, 3]  # never a claimed one: a customer's
    assert done.create == []


def test_a_place_the_pool_no_longer_holds_is_emptied() -> None:
    done = plan([pooled(1, place=THERE)], {HERE: 1}, A, enabled=True, now=NOW)
    assert [r.id for r in done.recycle] == [1]
    assert done.create == [HERE]


def test_pool_labels_name_the_row_and_no_customer() -> None:
    labels = pool_labels(7, "rc")
    assert pool_row_of(labels) == 7
    assert LABEL_SERVER not in labels and LABEL_CUSTOMER not in labels
    assert pool_row_of({"rachel-cloud/pool": "x"}) is None
    assert pool_row_of({}) is None


def test_a_pool_vps_is_the_pools_while_its_row_owns_it() -> None:
    assert pool_finding(pooled(1, "creating"), 500) is None  # the create in flight
    assert pool_finding(pooled(1, provider_id=500), 500) is None
    assert pool_finding(pooled(1, "recycling", provider_id=500), 500) is None
    assert pool_finding(pooled(1, "claimed", provider_id=500, server_id=9), 500) is None
    assert pool_finding(None, 500) == "its pool row does not exist"
    assert "is deleted" in (pool_finding(pooled(1, "deleted", provider_id=500), 500) or "")
    assert "a duplicate" in (pool_finding(pooled(1, provider_id=500), 501) or "")


def test_the_reconciler_knows_pool_servers_and_judges_a_claimed_one_as_its_servers() -> None:
    settings = Settings.load(environ={})

    def vps(provider_id: int, pool_id: int) -> ProviderServer:
        labels = pool_labels(pool_id, "rachel")
        return ProviderServer(provider_id, f"p{pool_id}", "running", None, None, labels,
                              NOW.isoformat())  # fmt: skip

    pool = {
        1: pooled(1, provider_id=11),
        2: pooled(2, "deleted", provider_id=12),
        3: pooled(3, "claimed", provider_id=13, server_id=30),
        4: pooled(4, "claimed", provider_id=14, server_id=40),
    }
    servers = [
        DbServer(30, "ready", 13, 1, NOW),
        DbServer(40, "deleted", 14, 1, NOW),
    ]
    listed = [vps(11, 1), vps(12, 2), vps(13, 3), vps(14, 4), vps(15, 5)]
    report = diff(listed, servers, {}, NOW, settings, pool=pool)
    orphans = {f.provider_id: f for f in report.of(Kind.ORPHAN)}
    assert set(orphans) == {12, 14, 15}  # 11 warm, 13 its server's: kept
    assert orphans[12].fix == Fix.DELETE and "is deleted" in orphans[12].reason
    assert orphans[15].fix == Fix.DELETE and "does not exist" in orphans[15].reason
    # A claimed VPS is its server's: judged like one (young: the safety age applies).
    assert "server 40 is deleted" in orphans[14].reason


def test_the_idle_cost_prices_billed_pool_servers_and_counts_the_unpriced() -> None:
    servers = [
        pooled(1), pooled(2, "booting"), pooled(3, "recycling", provider_id=103),
        pooled(4, "claimed"), pooled(5, "deleted"), pooled(6, place=("fsn1", "cx53")),
        pooled(7, "recycling"),  # its create was refused: nothing on Hetzner
    ]  # fmt: skip
    cost = pool_idle_cost(servers, {"cx23": 7.3})
    assert (cost.servers, cost.unpriced) == (4, 1)  # claimed: a customer's; deleted: gone
    assert cost.per_month == pytest.approx(3 * 7.3)
    assert cost.per_hour == pytest.approx(3 * 7.3 / 730)
    assert pool_idle_cost([], {}).per_hour == 0


def test_snapshot_storage_is_priced_per_gb_month() -> None:
    assert snapshot_cost([2.5, None, 1.5], 0.01) == (4.0, pytest.approx(0.04))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", {}), ("cx23=4.49, CX33=7", {"cx23": 4.49, "cx33": 7.0})],
)
def test_the_price_table_parses(text: str, expected: dict[str, float]) -> None:
    assert dict(parse_prices(text)) == expected


@pytest.mark.parametrize("text", ["cx23", "cx23=", "cx23=-1", "cx23=nan", "cx23=1,cx23=2", "=3"])
def test_a_bad_price_table_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"server_type=monthly price|more than once"):
        parse_prices(text)


def test_the_pool_holds_the_default_placement_unless_places_are_listed() -> None:
    default = PoolSize(1, 5)
    assert pool_sizes((), HERE, default) == {HERE: default}
    listed = parse_pool_places("fsn1/cx23=2..8, NBG1/cx23, hel1/cx33=0..0")
    assert pool_sizes(listed, HERE, default) == {
        HERE: PoolSize(2, 8),
        THERE: default,  # no bounds of its own: RACHEL_POOL_MIN and RACHEL_POOL_MAX
        ("hel1", "cx33"): PoolSize(0, 0),
    }


def test_pool_places_parse() -> None:
    assert parse_pool_places("") == ()
    assert parse_pool_places("fsn1/cx23=1..5") == (PoolPlace("fsn1", "cx23", 1, 5),)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("fsn1", "expected location/server_type"),
        ("fsn1/cx 23", "not a Hetzner server type name"),
        ("/cx23", "not a Hetzner location name"),
        ("fsn1/cx23=5..1", "0 <= MIN <= MAX <= 100"),
        ("fsn1/cx23=1-5", "expected bounds MIN..MAX"),
        ("fsn1/cx23=0..101", "MAX <= 100"),
        ("fsn1/cx23=a..b", "expected bounds"),
        ("fsn1/cx23,FSN1/cx23=1..2", "listed more than once"),
    ],
)
def test_bad_pool_places_are_refused(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_pool_places(text)


def test_pool_servers_whose_vps_vanished_are_recycled() -> None:
    servers = [
        pooled(1, provider_id=101),  # listed: kept
        pooled(2, provider_id=102),  # gone: recycled
        pooled(3, "booting", provider_id=103),  # gone while booting: recycled
        pooled(4, "creating"),  # no VPS recorded yet (its create in flight): kept
        pooled(5, "claimed", provider_id=105, server_id=9),  # its server's: the reconciler's
        pooled(6, "recycling", provider_id=106),  # already going
    ]
    assert [r.id for r in vanished(servers, {101})] == [2, 3]
