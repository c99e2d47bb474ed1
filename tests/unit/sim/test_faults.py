"""Fault documents and the decisions they make."""

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
