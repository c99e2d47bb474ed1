"""What the injection reads from `systemctl show`, what it calls running, the agent's env."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.cloud.injection import AgentConfig
from core.cloud.rachel8_unit import SERVING_MARK, ServiceState, last_output, parse_show, serving
from core.cloud.vps_scripts.common import read_env

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


CRASH_LOOP_JOURNAL = """\
Dec 06 11:06:47 test-1 bun[1200]: Rachel8 is running. Listening for messages...
Dec 06 11:06:47 test-1 systemd[1]: Started rachel8.service - Rachel8.
Dec 06 11:06:47 test-1 bun[1201]: Invalid environment configuration:
Dec 06 11:06:47 test-1 bun[1201]:   AI_PROVIDER: Invalid enum value. Expected 'claudecode'
Dec 06 11:06:47 test-1 bun[1201]: Run the setup wizard to fix: bun run setup
Dec 06 11:06:47 vps systemd[1]: rachel8.service: Main process exited, code=exited, status=1/FAILURE
Dec 06 11:06:47 test-1 systemd[1]: rachel8.service: Failed with result 'exit-code'.
Dec 06 11:06:58 test-1 systemd[1]: rachel8.service: Scheduled restart job, restart counter is at 1.
Dec 06 11:06:58 test-1 systemd[1]: rachel8.service: Start request repeated too quickly.
Dec 06 11:06:58 test-1 systemd[1]: rachel8.service: Failed with result 'start-limit-hit'.
Dec 06 11:06:58 test-1 systemd[1]: Failed to start rachel8.service - Rachel8.
"""


def test_the_last_output_is_what_the_last_process_printed_not_systemd_s_lines() -> None:
    assert last_output(CRASH_LOOP_JOURNAL) == (
        "Invalid environment configuration: | AI_PROVIDER: Invalid enum value. Expected "
        "'claudecode' | Run the setup wizard to fix: bun run setup"
    )


def test_a_failure_before_the_exec_is_the_forked_child_s_line() -> None:
    journal = (
        "Dec 06 11:06:47 test-1 systemd[1]: Started rachel8.service.\n"
        "Dec 06 11:06:47 test-1 (bun)[1201]: rachel8.service: Failed at step USER spawning "
        "/home/rachel/.bun/bin/bun: No such process\n"
    )
    assert last_output(journal).endswith(
        "Failed at step USER spawning /home/rachel/.bun/bin/bun: No such process"
    )


def test_a_journal_in_another_format_is_given_as_its_tail() -> None:
    assert last_output("-- No entries --\n") == "-- No entries --"
    assert len(last_output("x" * 5000)) == 600


def test_the_agent_env_is_read_back_by_the_agent_and_its_repr_hides_the_credential(
    tmp_path: Path,
) -> None:
    agent = AgentConfig(
        heartbeat_url="https://cp.example.com/heartbeats/7",
        credential="a-secret credential; $(id)",
        telegram_api_url="https://api.telegram.org",
    )
    env = tmp_path / "agent.env"
    env.write_text(agent.env())
    # The agent's own parser (shlex): each value comes back whole, nothing runs.
    assert read_env(str(env)) == {
        "RACHEL_HEARTBEAT_URL": "https://cp.example.com/heartbeats/7",
        "RACHEL_HEARTBEAT_CREDENTIAL": "a-secret credential; $(id)",
        "RACHEL_TELEGRAM_API_URL": "https://api.telegram.org",
    }
    assert "a-secret" not in repr(agent) and "a-secret" not in str(agent)


SERVING_JOURNAL = """\
Dec 06 11:06:40 test-1 bun[1100]: Rachel8 is running. Listening for messages...
Dec 06 11:06:45 test-1 systemd[1]: Stopping rachel8.service - Rachel8...
Dec 06 11:06:46 test-1 systemd[1]: Started rachel8.service - Rachel8.
Dec 06 11:06:46 test-1 bun[1200]: Rachel8 starting...
"""


def test_only_the_current_process_saying_it_serves_counts() -> None:
    assert not serving(SERVING_JOURNAL, "1200")  # the line is its predecessor's
    assert serving(SERVING_JOURNAL + "Dec 06 11:06:47 test-1 bun[1200]: " + SERVING_MARK, "1200")
    assert not serving("-- No entries --", "1200")
