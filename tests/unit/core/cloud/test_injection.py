"""What the injection reads from `systemctl show`, and what it calls running."""

from __future__ import annotations

import pytest

from core.cloud.injection import ServiceState, parse_show

RUNNING = "ActiveState=active\nSubState=running\nNRestarts=0\nResult=success\nExecMainStatus=0\n"


def test_a_running_unit() -> None:
    state = parse_show(RUNNING)
    assert state == ServiceState("active", "running", 0, "success", 0)
    assert state.running


@pytest.mark.parametrize(
    "text",
    [
        # Between two automatic restarts after exiting 1: not running.
        "ActiveState=activating\nSubState=auto-restart\nNRestarts=1\nResult=exit-code\n"
        "ExecMainStatus=1\n",
        # Gave up after the start limit.
        "ActiveState=failed\nSubState=failed\nNRestarts=3\nResult=start-limit-hit\n"
        "ExecMainStatus=1\n",
        # Rachel8 without a .env: prints a hint and exits 0.
        "ActiveState=inactive\nSubState=dead\nNRestarts=0\nResult=success\nExecMainStatus=0\n",
    ],
)
def test_units_that_do_not_run(text: str) -> None:
    assert not parse_show(text).running


def test_a_missing_property_is_an_error() -> None:
    with pytest.raises(ValueError, match="NRestarts"):
        parse_show("ActiveState=active\nSubState=running\nResult=success\nExecMainStatus=0\n")


def test_describe_says_state_result_and_restarts() -> None:
    state = ServiceState("failed", "failed", 3, "start-limit-hit", 1)
    assert (
        state.describe() == "failed/failed (start-limit-hit, exit status 1, 3 automatic restarts)"
    )
