"""The capacity fallback's decisions: the plan, the next pair, the Events' text."""

from __future__ import annotations

import pytest

from core.cloud.provider import CapacityError
from core.domain.placement import (
    Attempt,
    Exhausted,
    Pair,
    Refusal,
    exhausted_error,
    fallback_locations,
    fallback_types,
    next_pair,
    origin_of,
    parse_refusal,
    plan,
    refusal,
    refusal_event,
)

EU = ("fsn1", "nbg1", "hel1")
TYPES = ("cx23", "cx33", "cpx22")


def refused(text: str, code: str = "resource_unavailable") -> Refusal:
    location, server_type = text.split("/")
    return Refusal(Pair(location, server_type), code, "no room")


def test_the_plan_tries_every_location_of_a_type_before_the_next_type() -> None:
    assert [str(p) for p in plan(Pair("fsn1", "cx23"), EU, ("cx23", "cx33"))] == [
        "fsn1/cx23", "nbg1/cx23", "hel1/cx23", "fsn1/cx33", "nbg1/cx33", "hel1/cx33",
    ]  # fmt: skip


def test_a_single_location_and_type_plan_one_pair() -> None:
    assert plan(Pair("fsn1", "cx23"), ("fsn1",), ("cx23",)) == (Pair("fsn1", "cx23"),)


def test_the_deploy_s_own_location_comes_first_then_the_list_in_order() -> None:
    assert fallback_locations("hel1", EU) == ("hel1", "fsn1", "nbg1")
    # Not listed but in the zone: first, then the zone's listed locations.
    assert fallback_locations("nbg1", ("fsn1", "hel1")) == ("nbg1", "fsn1", "hel1")


def test_a_server_never_falls_back_to_another_zone() -> None:
    assert fallback_locations("ash", EU) == ("ash",)
    assert fallback_locations("sin", ("sin",)) == ("sin",)
    # A location we know no zone of falls back to nothing it was not listed with.
    assert fallback_locations("xyz1", EU) == ("xyz1",)
    assert fallback_locations("xyz1", ("xyz1", "xyz2")) == ("xyz1", "xyz2")


def test_types_fall_back_only_to_those_the_list_prefers_less() -> None:
    assert fallback_types("cx23", TYPES) == TYPES
    assert fallback_types("cx33", TYPES) == ("cx33", "cpx22")
    assert fallback_types("cpx22", TYPES) == ("cpx22",)
    assert fallback_types("ccx13", TYPES) == ("ccx13",)  # a deploy's own choice


def test_next_pair_goes_past_refusals_in_order() -> None:
    candidates = plan(Pair("fsn1", "cx23"), EU, ("cx23", "cx33"))
    assert next_pair(candidates, [], {}) == Attempt(Pair("fsn1", "cx23"))
    after_one = next_pair(candidates, [refused("fsn1/cx23")], {})
    assert after_one == Attempt(Pair("nbg1", "cx23"))
    every_cx23 = [refused(f"{loc}/cx23") for loc in EU]
    assert next_pair(candidates, every_cx23, {}) == Attempt(Pair("fsn1", "cx33"))


def test_pairs_advertised_unavailable_are_skipped_without_a_create() -> None:
    candidates = plan(Pair("fsn1", "cx23"), EU, ("cx23", "cx33"))
    shown = {"cx23": {"fsn1": False, "nbg1": False, "hel1": True}}
    assert next_pair(candidates, [], shown) == Attempt(
        Pair("hel1", "cx23"), (Pair("fsn1", "cx23"), Pair("nbg1", "cx23"))
    )
    # Refused pairs are not reported as skipped again.
    decided = next_pair(candidates, [refused("fsn1/cx23")], shown)
    assert decided == Attempt(Pair("hel1", "cx23"), (Pair("nbg1", "cx23"),))


def test_availability_is_not_trusted_blindly() -> None:
    candidates = plan(Pair("fsn1", "cx23"), EU, ("cx23",))
    shown = {"cx23": {"fsn1": True, "nbg1": True, "hel1": True}}
    # Advertised available, yet refused: the next pair.
    assert next_pair(candidates, [refused("fsn1/cx23")], shown) == Attempt(Pair("nbg1", "cx23"))


def test_a_type_not_offered_in_a_location_is_skipped_there() -> None:
    candidates = plan(Pair("hel1", "cx23"), EU, ("cx23",))
    shown = {"cx23": {"fsn1": True, "nbg1": True}}  # hel1 absent: not offered at all
    decided = next_pair(candidates, [], shown)
    assert decided == Attempt(Pair("fsn1", "cx23"), (Pair("hel1", "cx23"),))


def test_an_unknown_type_s_pairs_are_tried() -> None:
    candidates = plan(Pair("fsn1", "cx33"), EU, ("cx33",))
    assert next_pair(candidates, [], {"cx23": {"fsn1": False}}) == Attempt(Pair("fsn1", "cx33"))


def test_exhausted_names_every_pair_and_what_became_of_it() -> None:
    candidates = plan(Pair("fsn1", "cx23"), EU, ("cx23",))
    refusals = [refused("fsn1/cx23"), refused("nbg1/cx23", "placement_error")]
    decided = next_pair(candidates, refusals, {"cx23": {"fsn1": True, "nbg1": True}})
    assert isinstance(decided, Exhausted)
    assert decided.skipped == (Pair("hel1", "cx23"),)
    assert decided.reason == (
        "no room for the server anywhere it may go: fsn1/cx23 resource_unavailable, "
        "nbg1/cx23 placement_error, hel1/cx23 advertised unavailable"
    )
    error = exhausted_error(decided)
    assert error.code == "placement_error" and not error.transient
    assert isinstance(error, CapacityError) and error.message == decided.reason


def test_everything_advertised_unavailable_is_exhausted_without_a_try() -> None:
    candidates = plan(Pair("fsn1", "cx23"), EU, ("cx23",))
    decided = next_pair(candidates, [], {"cx23": dict.fromkeys(EU, False)})
    assert isinstance(decided, Exhausted) and decided.refused == ()
    assert exhausted_error(decided).code == "resource_unavailable"


def test_the_origin_is_the_first_pair_refused() -> None:
    assert origin_of(Pair("hel1", "cx23"), []) == Pair("hel1", "cx23")
    assert origin_of(Pair("hel1", "cx23"), [refused("fsn1/cx23")]) == Pair("fsn1", "cx23")


def test_a_refusal_drops_the_adapter_s_prefix_and_keeps_one_line() -> None:
    error = CapacityError(
        "create server: resource_unavailable: server location disabled;\nno room "
        "(correlation id abc)",
        code="resource_unavailable",
        transient=False,
    )
    found = refusal(Pair("fsn1", "cx23"), error)
    assert found.detail == "server location disabled, no room (correlation id abc)"
    long = CapacityError("x" * 1000, code="placement_error", transient=False)
    assert len(refusal(Pair("fsn1", "cx23"), long).detail) == 300


@pytest.mark.parametrize(
    ("decision", "text"),
    [
        (
            Attempt(Pair("nbg1", "cx23")),
            "fsn1/cx23: resource_unavailable: no room; trying nbg1/cx23",
        ),
        (
            Attempt(Pair("hel1", "cx23"), (Pair("nbg1", "cx23"),)),
            "fsn1/cx23: resource_unavailable: no room; nbg1/cx23 advertised unavailable; "
            "trying hel1/cx23",
        ),
        (
            Exhausted((), ()),
            "fsn1/cx23: resource_unavailable: no room; no other location or server type left",
        ),
    ],
)
def test_the_event_says_what_was_refused_and_what_comes_next(
    decision: Attempt | Exhausted, text: str
) -> None:
    assert refusal_event(refused("fsn1/cx23"), decision) == text
    assert parse_refusal(text) == refused("fsn1/cx23")


def test_an_event_without_a_refusal_parses_as_none() -> None:
    text = refusal_event(None, Attempt(Pair("nbg1", "cx23"), (Pair("fsn1", "cx23"),)))
    assert text == "fsn1/cx23 advertised unavailable; trying nbg1/cx23"
    assert parse_refusal(text) is None
    assert parse_refusal("fsn1/cx23: server_error: boom; trying nbg1/cx23") is None
    assert parse_refusal("retry 1 of 6") is None
