"""The waves of a rollout: parsing them, and the stable order spread across locations."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain.rollout_states import RolloutError
from core.domain.rollout_waves import (
    DEFAULT_WAVES,
    Candidate,
    Waves,
    order,
    parse_waves,
    plan,
    wave_sizes,
)


def test_the_default_and_a_canary_of_two() -> None:
    assert parse_waves(DEFAULT_WAVES) == Waves(1, (0.1, 0.5, 1.0))
    assert parse_waves(" 2 , 25% ,100%") == Waves(2, (0.25, 1.0))
    assert parse_waves("CANARY,100%") == Waves(1, (1.0,))
    assert parse_waves("canary,12.5%,100%").shares == (0.125, 1.0)
    assert parse_waves("3,10%,100%").text() == "3,10%,100%"
    assert parse_waves(DEFAULT_WAVES).text() == DEFAULT_WAVES


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "give a canary then shares"),
        ("  ", "give a canary then shares"),
        ("canary,,100%", "give a canary then shares"),
        ("canary", "ending at 100%"),
        ("canary,10%,50%", "the last wave must be 100%"),
        ("canary,50%,50%,100%", "must increase"),
        ("canary,50%,10%,100%", "must increase"),
        ("canary,10%,150%", "above 100%"),
        ("canary,0%,100%", "not above 0%"),
        ("canary,-5%,100%", "not a share"),
        ("0,100%", "at least one server"),
        ("first,100%", "the first wave is the canary"),
        ("10%,100%", "the first wave is the canary"),
        ("canary,ten,100%", "not a share"),
        ("canary,10,100%", "not a share"),
    ],
)
def test_bad_waves_are_refused_saying_why(text: str, why: str) -> None:
    with pytest.raises(RolloutError, match=why) as caught:
        parse_waves(text)
    assert caught.value.code == "invalid_waves"


def test_wave_sizes_are_cumulative_and_drop_empty_waves() -> None:
    waves = parse_waves(DEFAULT_WAVES)
    assert wave_sizes(10, waves) == [1, 4, 5]  # 10% of 10 is the canary already
    assert wave_sizes(100, waves) == [1, 9, 40, 50]
    assert wave_sizes(1000, waves) == [1, 99, 400, 500]
    assert wave_sizes(3, parse_waves("5,100%")) == [3]  # the canary is the whole fleet
    assert wave_sizes(0, waves) == []
    assert wave_sizes(7, parse_waves("2,25%,100%")) == [2, 5]


def test_plan_spreads_each_wave_across_locations_canary_first() -> None:
    fleet = [Candidate(i, loc) for i, loc in enumerate(["fsn1"] * 6 + ["nbg1"] * 3 + ["hel1"] * 3)]
    waves = plan(fleet, parse_waves("3,50%,100%"), seed=7)
    location = {c.server_id: c.location for c in fleet}
    assert [len(w) for w in waves] == [3, 3, 6]
    assert {location[s] for s in waves[0]} == {"fsn1", "nbg1", "hel1"}
    assert {location[s] for s in waves[1]} == {"fsn1", "nbg1", "hel1"}


locations = st.sampled_from(["fsn1", "nbg1", "hel1", "ash", "hil", "sin"])
fleets = st.lists(locations, max_size=60).map(
    lambda locs: [Candidate(100 + i, loc) for i, loc in enumerate(locs)]
)
wave_texts = st.lists(st.integers(1, 99), max_size=4, unique=True).flatmap(
    lambda pcts: st.integers(1, 5).map(
        lambda canary: ",".join([str(canary), *(f"{p}%" for p in sorted(pcts)), "100%"])
    )
)


@settings(max_examples=200, deadline=None)
@given(fleet=fleets, text=wave_texts, seed=st.integers(0, 2**31))
def test_every_server_in_exactly_one_wave_each_spanning_locations(
    fleet: list[Candidate], text: str, seed: int
) -> None:
    waves = parse_waves(text)
    planned = plan(fleet, waves, seed)
    flat = [s for wave in planned for s in wave]
    assert sorted(flat) == sorted(c.server_id for c in fleet)  # each exactly once
    assert all(planned), "no empty wave"
    if fleet:
        assert len(planned[0]) == min(waves.canary, len(fleet))
    # Cumulative: the waves end where the canary and each share of the fleet end.
    n = len(fleet)
    ends = [sum(len(w) for w in planned[: k + 1]) for k in range(len(planned))]
    bounds = {
        min(waves.canary, n),
        *(max(min(waves.canary, n), math.ceil(round(s * n, 9))) for s in waves.shares),
    }
    assert ends == sorted(bounds - {0})
    location = {c.server_id: c.location for c in fleet}
    for k, wave in enumerate(planned):
        # Every location with servers in this wave or later is in it, as far as its size allows.
        remaining = {location[s] for w in planned[k:] for s in w}
        assert len({location[s] for s in wave}) == min(len(wave), len(remaining))


@settings(max_examples=50, deadline=None)
@given(fleet=fleets, seed=st.integers(0, 2**31))
def test_the_order_is_stable_for_a_seed_whatever_order_the_servers_come_in(
    fleet: list[Candidate], seed: int
) -> None:
    assert order(fleet, seed) == order(list(reversed(fleet)), seed)
    assert plan(fleet, parse_waves(DEFAULT_WAVES), seed) == plan(
        list(reversed(fleet)), parse_waves(DEFAULT_WAVES), seed
    )


def test_another_seed_picks_another_canary() -> None:
    fleet = [Candidate(i, "fsn1") for i in range(50)]
    canaries = {plan(fleet, parse_waves(DEFAULT_WAVES), seed)[0][0] for seed in range(20)}
    assert len(canaries) > 5
