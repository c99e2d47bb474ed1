"""The simulator's pagination and sorting, as Hetzner's API does them."""

from __future__ import annotations

import pytest

from sim.pagination import (
    PageError,
    PageRequest,
    link_header,
    paginate,
    parse_page_request,
    sort_items,
)


def test_paginate_middle_page() -> None:
    items, meta = paginate(list(range(60)), PageRequest(page=2, per_page=25))
    assert items == list(range(25, 50))
    assert meta == {
        "page": 2,
        "per_page": 25,
        "previous_page": 1,
        "next_page": 3,
        "last_page": 3,
        "total_entries": 60,
    }


def test_paginate_empty_and_beyond_last() -> None:
    assert paginate([], PageRequest())[1]["last_page"] == 1
    items, meta = paginate([1, 2], PageRequest(page=5, per_page=1))
    assert items == [] and meta["next_page"] is None and meta["previous_page"] == 4


def test_page_request_defaults_clamp_and_errors() -> None:
    assert parse_page_request(None, None) == PageRequest(1, 25)
    assert parse_page_request("2", "500") == PageRequest(2, 50)
    for page, per_page in (("0", None), ("x", None), (None, "-1")):
        with pytest.raises(PageError):
            parse_page_request(page, per_page)


def test_link_header_relations() -> None:
    _, meta = paginate(list(range(10)), PageRequest(page=2, per_page=3))
    header = link_header("http://h/v1/servers", [("page", "2"), ("per_page", "3")], meta)
    assert '<http://h/v1/servers?per_page=3&page=1>; rel="prev"' in header
    assert '<http://h/v1/servers?per_page=3&page=3>; rel="next"' in header
    assert '<http://h/v1/servers?per_page=3&page=4>; rel="last"' in header


def test_sort_multi_key_and_errors() -> None:
    rows = [("b", 1), ("a", 2), ("b", 0)]
    fields = {"name": lambda r: r[0], "id": lambda r: r[1]}
    assert sort_items(rows, ["name", "id:desc"], fields) == [("a", 2), ("b", 1), ("b", 0)]
    assert sort_items(rows, ["id:asc"], fields) == [("b", 0), ("b", 1), ("a", 2)]
    with pytest.raises(PageError):
        sort_items(rows, ["created"], fields)
    with pytest.raises(PageError):
        sort_items(rows, ["id:sideways"], fields)
