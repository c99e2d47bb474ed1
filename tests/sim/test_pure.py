"""Pure logic: pagination, sorting, the token bucket, fault decisions."""

from __future__ import annotations

import random

import pytest

from sim.faults import (
    ErrorRule,
    FaultError,
    Faults,
    ServerFault,
    action_fails,
    decide_server_faults,
    parse_faults,
    pick_error_rule,
    server_fault_applies,
)
from sim.pagination import (
    PageError,
    PageRequest,
    link_header,
    paginate,
    parse_page_request,
    sort_items,
)
from sim.ratelimit import TokenBucket

# -- pagination --------------------------------------------------------------


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


# -- token bucket ------------------------------------------------------------


def test_bucket_empties_and_refills() -> None:
    bucket = TokenBucket(capacity=3, refill_per_second=1.0, updated=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.remaining(100.0) == 0
    assert bucket.seconds_until_full(100.0) == pytest.approx(3.0)
    assert bucket.take(101.0) is True  # one token refilled after a second
    assert bucket.remaining(200.0) == 3  # never above capacity


def test_bucket_without_refill_stays_empty() -> None:
    bucket = TokenBucket(capacity=1, refill_per_second=0.0, updated=0.0)
    assert bucket.take(0.0) and not bucket.take(1000.0)
    assert bucket.seconds_until_full(1000.0) == 3600.0
    bucket.reset(1000.0)
    assert bucket.take(1000.0)


# -- faults ------------------------------------------------------------------


def test_parse_faults_document() -> None:
    faults = parse_faults(
        '{"errors": {"create_server": {"code": "unavailable", "count": 2}},'
        ' "never_running": {"names": ["bad-*"]}, "ssh_refuse": 0.5, "seed": 1}'
    )
    assert faults.errors["create_server"] == ErrorRule(code="unavailable", rate=1.0, count=2)
    assert faults.never_running == ServerFault(rate=0.0, names=["bad-*"])
    assert faults.ssh_refuse == 0.5
    assert parse_faults("") == Faults()


@pytest.mark.parametrize(
    "document",
    [
        "{not json",
        '{"unknown_fault": 1}',
        '{"errors": {"x": {"code": "no_such_code"}}}',
        '{"errors": {"x": {"rate": 2}}}',
        '{"ssh_refuse": -0.1}',
        '{"rate_limit_burst": -1}',
    ],
)
def test_invalid_fault_documents(document: str) -> None:
    with pytest.raises(FaultError):
        parse_faults(document)


def test_error_rule_choice() -> None:
    faults = Faults(
        errors={
            "create_server": ErrorRule(code="unavailable", rate=0.5),
            "*": ErrorRule(code="timeout"),
            "list_servers": ErrorRule(count=0),
        }
    )
    assert pick_error_rule(faults, "create_server", 0.4) is not None
    assert pick_error_rule(faults, "create_server", 0.6) is None  # own rule wins over *
    rule = pick_error_rule(faults, "get_server", 0.99)
    assert rule is not None and rule.code == "timeout"
    assert pick_error_rule(faults, "list_servers", 0.0) is None  # spent


def test_action_and_server_fault_decisions() -> None:
    faults = Faults(action_errors={"create_server": 1.0}, no_callback=ServerFault(names=["x-*"]))
    assert action_fails(faults, "create_server", 0.99)
    assert not action_fails(faults, "delete_server", 0.0)
    assert server_fault_applies(faults.no_callback, "x-1", 0.99)
    assert not server_fault_applies(faults.no_callback, "y-1", 0.0)
    assert server_fault_applies(0.3, "any", 0.2) and not server_fault_applies(0.3, "any", 0.4)
    decided = decide_server_faults(faults, "x-2", random.Random(0))
    assert decided.no_callback and not decided.never_running and not decided.ssh_refuse
