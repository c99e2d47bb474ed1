"""The agent's reading of the box: its env file, its state, Rachel8's journal and HEAD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cloud import vps_contract as contract
from core.cloud.vps_scripts import AGENT, source
from sim.agent import (
    CONFLICT,
    AgentFailure,
    conflicts_since,
    next_sequence,
    read_commit,
    read_env,
    read_state,
    service_report,
)
from sim.rootfs import RootFs
from sim.service import Clock
from sim.systemd import Systemd

ENV = "RACHEL_HEARTBEAT_URL=http://127.0.0.1:8000/heartbeats/7\nRACHEL_HEARTBEAT_CREDENTIAL=c\n"


@pytest.fixture
def fs(tmp_path: Path) -> RootFs:
    return RootFs(tmp_path)


def test_the_env_file_must_exist_be_roots_0600_and_complete(fs: RootFs) -> None:
    with pytest.raises(AgentFailure, match="no heartbeat URL or credential in /etc/"):
        read_env(fs)
    fs.write(contract.AGENT_ENV_PATH, ENV.replace("http://", "ftp://").encode(), 0o600)
    with pytest.raises(AgentFailure, match="no heartbeat URL or credential"):
        read_env(fs)
    fs.write(contract.AGENT_ENV_PATH, ENV.encode(), 0o640)
    with pytest.raises(AgentFailure, match="it is 0640, uid 0"):
        read_env(fs)
    fs.write(contract.AGENT_ENV_PATH, ENV.encode(), 0o600, owner=(1000, 1000))
    with pytest.raises(AgentFailure, match="uid 1000"):
        read_env(fs)
    fs.write(contract.AGENT_ENV_PATH, b"RACHEL_HEARTBEAT_URL=http://x/\n", 0o600, owner=(0, 0))
    with pytest.raises(AgentFailure, match="no heartbeat URL or credential"):
        read_env(fs)
    fs.write(contract.AGENT_ENV_PATH, ENV.encode(), 0o600, owner=(0, 0))
    assert read_env(fs)[contract.HEARTBEAT_CREDENTIAL_VAR] == "c"


def test_the_sequence_outgrows_both_the_state_and_the_clock(fs: RootFs) -> None:
    assert read_state(fs) == (0, None)
    fs.write(contract.AGENT_STATE_PATH, b"{not json", 0o600)
    assert read_state(fs) == (0, None)  # a lost state is not a replayer: the clock wins
    fs.write(contract.AGENT_STATE_PATH, json.dumps({"seq": 9, "at": 1.5}).encode(), 0o600)
    assert read_state(fs) == (9, 1.5)
    assert next_sequence(9, 1000.0) == 1_000_000
    assert next_sequence(5_000_000, 1000.0) == 5_000_001


def test_head_is_a_commit_or_nothing(fs: RootFs) -> None:
    layout = contract.Layout("rachel")
    assert read_commit(fs, layout) is None
    fs.write(layout.git_head_path, b"ref: refs/heads/main\n", 0o644)
    assert read_commit(fs, layout) is None
    fs.write(layout.git_head_path, b"a" * 40 + b"\n", 0o644)
    assert read_commit(fs, layout) == "a" * 40


class ManualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_409_lines_are_counted_since_the_last_run(fs: RootFs) -> None:
    time = ManualTime()
    systemd = Systemd(fs, clock=Clock(1.0, time))
    unknown = service_report(systemd)  # systemctl show answers for a unit it does not know
    assert unknown is not None and (unknown.active, unknown.sub) == ("inactive", "dead")
    assert conflicts_since(systemd, 0.0) == 0
    fs.write(
        f"/etc/systemd/system/{contract.SERVICE_UNIT}",
        b"[Service]\nExecStart=/usr/bin/sleep infinity\n",
        0o644,
    )
    systemd.systemctl(["start", contract.SERVICE_UNIT])
    service = systemd.services[contract.SERVICE_UNIT]
    time.now = 10.0
    service.exit_now(1, ("Call to 'getUpdates' failed! (409: Conflict: terminated by other)",))
    assert conflicts_since(systemd, systemd.clock.epoch(0.0)) == 1
    report = service_report(systemd)
    assert report is not None and (report.active, report.result, report.exit_status) == (
        "failed", "exit-code", 1,
    )  # fmt: skip


def test_a_rachel8_that_exited_on_a_409_shows_it_until_it_starts_again(fs: RootFs) -> None:
    time = ManualTime()
    systemd = Systemd(fs, clock=Clock(1.0, time))
    fs.write(
        f"/etc/systemd/system/{contract.SERVICE_UNIT}",
        b"[Service]\nExecStart=/usr/bin/sleep infinity\n",
        0o644,
    )
    systemd.systemctl(["start", contract.SERVICE_UNIT])
    service = systemd.services[contract.SERVICE_UNIT]
    time.now = 10.0
    service.exit_now(1, ("Call to 'getUpdates' failed! (409: Conflict: terminated by other)",))
    # Heartbeats long after: the process that ended on it is still the last one started.
    assert conflicts_since(systemd, systemd.clock.epoch(500.0)) == 1
    time.now = 600.0
    systemd.systemctl(["restart", contract.SERVICE_UNIT])
    assert conflicts_since(systemd, systemd.clock.epoch(500.0)) == 0  # it started afresh
    assert conflicts_since(systemd, systemd.clock.epoch(5.0)) == 1  # unless not heard since


def test_a_webhooks_409s_are_no_conflict(fs: RootFs) -> None:
    time = ManualTime()
    systemd = Systemd(fs, clock=Clock(1.0, time))
    fs.write(
        f"/etc/systemd/system/{contract.SERVICE_UNIT}",
        b"[Service]\nExecStart=/usr/bin/sleep infinity\n",
        0o644,
    )
    systemd.systemctl(["start", contract.SERVICE_UNIT])
    systemd.services[contract.SERVICE_UNIT].exit_now(
        1,
        (
            "GrammyError: Call to 'getUpdates' failed! (409: Conflict: terminated by setWebhook "
            "request)",
            "GrammyError: Call to 'getUpdates' failed! (409: Conflict: can't use getUpdates "
            "method while webhook is active; use deleteWebhook to delete the webhook first)",
        ),
    )
    assert conflicts_since(systemd, 0.0) == 0


def test_the_409_pattern_is_the_scripts() -> None:
    assert f'CONFLICT = re.compile(r"{CONFLICT.pattern}")' in source(AGENT)
