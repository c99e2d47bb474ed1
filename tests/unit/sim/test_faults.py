"""Fault documents and the decisions they make."""

from __future__ import annotations

import random

import pytest

from sim.faults import (
    VPS_FAULTS,
    ErrorRule,
    FaultError,
    FaultRequest,
    Faults,
    ServerFault,
    VpsFaults,
    action_fails,
    decide_server_faults,
    parse_fault_request,
    parse_faults,
    pick_error_rule,
    pick_share,
    server_fault_applies,
)


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


def test_vps_fault_requests() -> None:
    assert parse_fault_request({"fault": "freeze", "servers": ["a"]}, clearing=False) == (
        FaultRequest("freeze", ["a"])
    )
    assert parse_fault_request({"fault": "partition", "share": 1, "seed": 3}, clearing=False) == (
        FaultRequest("partition", None, 1.0, 3)
    )
    assert parse_fault_request({}, clearing=True) == FaultRequest(None)
    assert parse_fault_request({"fault": None, "servers": ["b"]}, clearing=True) == (
        FaultRequest(None, ["b"])
    )


@pytest.mark.parametrize(
    ("body", "clearing"),
    [
        ({"fault": "nope", "share": 1}, False),
        ({"fault": None, "share": 1}, False),
        ({"fault": "freeze"}, False),
        ({"fault": "freeze", "share": True}, False),
        ({"fault": "freeze", "share": -0.1}, False),
        ({"fault": "freeze", "servers": [""]}, False),
        ({"fault": "freeze", "servers": [1]}, False),
        ({"fault": "freeze", "share": 0.5, "seed": 1.5}, False),
        ({"fault": "freeze", "share": 0.5, "extra": 1}, False),
        ({"fault": "freeze", "share": 0.5}, True),
        ({"fault": "nope"}, True),
    ],
)
def test_bad_vps_fault_requests(body: dict[str, object], clearing: bool) -> None:
    with pytest.raises(FaultError):
        parse_fault_request(body, clearing=clearing)


def test_a_share_is_rounded_and_reproducible() -> None:
    names = [f"rc-{i}" for i in range(10)]
    picked = pick_share(names, 0.33, random.Random(5))
    assert len(picked) == 3 and picked == sorted(picked)
    assert picked == pick_share(list(reversed(names)), 0.33, random.Random(5))
    assert pick_share(names, 0.0, random.Random(5)) == []
    assert pick_share(names, 1.0, random.Random(5)) == names


def test_vps_faults_flags() -> None:
    faults = VpsFaults(crash_once=True, partition=True)
    assert faults.active() == ["crash_once", "partition"] and faults.unreachable
    assert faults.take_crash_once() and not faults.take_crash_once()
    assert faults.active() == ["partition"]
    assert set(VPS_FAULTS) == {f for f in vars(VpsFaults()) if isinstance(getattr(faults, f), bool)}
