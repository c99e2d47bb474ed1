"""Label selectors and label validation (pure)."""

from __future__ import annotations

import pytest

from sim.labels import (
    SelectorError,
    parse_selector,
    selector_matches,
    valid_label_key,
    valid_label_value,
)

LABELS = {"env": "prod", "rachel-cloud/managed": "true", "tier": "web"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("env==prod", True),
        ("env=prod", True),
        ("env==dev", False),
        ("env!=dev", True),
        ("env!=prod", False),
        ("missing!=x", True),
        ("env", True),
        ("missing", False),
        ("!missing", True),
        ("!env", False),
        ("env in (dev,prod)", True),
        ("env in (dev, staging)", False),
        ("env notin (dev,staging)", True),
        ("env notin (prod)", False),
        ("missing notin (a)", True),
        ("missing in (a)", False),
        ("rachel-cloud/managed=true,env=prod", True),
        ("rachel-cloud/managed=true,env=dev", False),
        ("env in (dev,prod),tier=web,!gone", True),
        ("", True),
    ],
)
def test_selector_operators(selector: str, expected: bool) -> None:
    assert selector_matches(selector, LABELS) is expected


@pytest.mark.parametrize(
    "selector", ["env in dev", "env in (a", "env in (a,)", ",", "a b", "env)==x", "-bad=1"]
)
def test_malformed_selectors_are_rejected(selector: str) -> None:
    with pytest.raises(SelectorError):
        parse_selector(selector)


def test_empty_value_matches_empty_label() -> None:
    # Label values may be empty, so `k=` selects exactly those.
    assert selector_matches("k=", {"k": ""})
    assert not selector_matches("k==", {"k": "v"})


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("env", True),
        ("rachel-cloud/server", True),
        ("a.b.c/x_y-z.1", True),
        ("", False),
        ("-env", False),
        ("UPPER/x", False),
        ("x" * 64, False),
    ],
)
def test_label_keys(key: str, ok: bool) -> None:
    assert valid_label_key(key) is ok


@pytest.mark.parametrize(
    ("value", "ok"), [("", True), ("v1.2_3-x", True), ("a b", False), ("-a", False)]
)
def test_label_values(value: str, ok: bool) -> None:
    assert valid_label_value(value) is ok
