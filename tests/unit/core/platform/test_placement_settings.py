"""RACHEL_LOCATION and RACHEL_SERVER_TYPE: one value, as before, or a list in order."""

from __future__ import annotations

import pytest

from core.errors import SettingsError
from core.platform.placement_settings import network_zone
from core.platform.settings import Settings


def load(**env: str) -> Settings:
    return Settings.load(environ=env, env_file=None)


def test_a_single_value_still_works() -> None:
    s = load(RACHEL_LOCATION="hel1", RACHEL_SERVER_TYPE="cx33")
    assert (s.locations, s.location) == (("hel1",), "hel1")
    assert (s.server_types, s.server_type) == (("cx33",), "cx33")


def test_the_defaults_fall_back_across_eu_central_on_one_type() -> None:
    s = load()
    assert s.locations == ("fsn1", "nbg1", "hel1") and s.location == "fsn1"
    assert s.server_types == ("cx23",) and s.server_type == "cx23"


def test_lists_keep_their_order() -> None:
    s = load(RACHEL_LOCATION=" nbg1, FSN1 ", RACHEL_SERVER_TYPE="cx23,cx33,cpx22")
    assert s.locations == ("nbg1", "fsn1") and s.location == "nbg1"
    assert s.server_types == ("cx23", "cx33", "cpx22")
    assert dict(s.describe())["RACHEL_LOCATION"] == "nbg1,fsn1"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("RACHEL_LOCATION", "fsn1,ash", "one network zone, got eu-central: fsn1; us-east: ash"),
        ("RACHEL_LOCATION", "fsn1,nbg1,sin", "ap-southeast: sin"),
        ("RACHEL_LOCATION", "fsn1,fsn1", "fsn1 listed more than once"),
        ("RACHEL_LOCATION", " , ", "at least one location"),
        ("RACHEL_LOCATION", "fsn 1", "is not a Hetzner location name"),
        ("RACHEL_SERVER_TYPE", ",", "at least one server type"),
        ("RACHEL_SERVER_TYPE", "cx23,cx23", "cx23 listed more than once"),
        ("RACHEL_SERVER_TYPE", "cx_23", "is not a Hetzner server type name"),
    ],
)
def test_bad_lists_are_refused_at_load(name: str, value: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as info:
        load(**{name: value})
    assert name in str(info.value) and fragment in str(info.value)


def test_a_location_of_an_unknown_zone_is_accepted() -> None:
    # A location Hetzner opened since: its zone cannot be checked, so it is not refused.
    assert load(RACHEL_LOCATION="fsn1,xyz1").locations == ("fsn1", "xyz1")
    assert network_zone("xyz1") is None and network_zone("hel1") == "eu-central"


def test_pool_places_are_shown_as_written() -> None:
    s = load(RACHEL_POOL_PLACES="fsn1/cx23=1..3, NBG1/cx23")
    assert dict(s.describe())["RACHEL_POOL_PLACES"] == "fsn1/cx23=1..3,nbg1/cx23"
