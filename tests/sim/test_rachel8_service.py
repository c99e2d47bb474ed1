"""The simulated Rachel8 unit: systemd's checks, Rachel8's own, and systemd's restart policy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from core.cloud import vps_contract as contract
from sim.service import Clock
from sim.vps import Vps
from tests.sim.helpers import wait_for
from tests.sim.rachel8_data import LAYOUT, UNIT, configure, credentials, env_text, make_vps

UNIT_NAME = contract.SERVICE_UNIT
ROOT = (0, 0)


class ManualTime:
    """A real-clock source the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def show(vps: Vps) -> dict[str, str]:
    result = vps.systemd.systemctl(["show", UNIT_NAME, "-p", ",".join(contract.SERVICE_PROPERTIES)])
    assert result.exit_status == 0
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def settled(vps: Vps) -> dict[str, str]:
    """The unit's properties once it stopped changing (running, dead or failed)."""

    def done() -> dict[str, str] | None:
        props = show(vps)
        return None if props["ActiveState"] == "activating" else props

    time.sleep(0.002)
    return wait_for(done, timeout=5, what="the unit to settle")


def restart(vps: Vps) -> None:
    # Type=simple: the restart returns once the process is forked, whatever it does next.
    assert vps.systemd.systemctl(["restart", UNIT_NAME]).exit_status == 0


def test_without_env_rachel8_prints_a_hint_and_exits_0(tmp_path: Path) -> None:
    vps = make_vps(tmp_path)
    restart(vps)
    props = wait_for(lambda: show(vps)["SubState"] == "dead" and show(vps))
    assert props == {
        "ActiveState": "inactive", "SubState": "dead", "NRestarts": "0",
        "Result": "success", "ExecMainStatus": "0",
    }  # fmt: skip
    assert "No .env file found." in vps.systemd.journal(UNIT_NAME)
    result = vps.systemd.systemctl(["is-active", UNIT_NAME])
    assert (result.exit_status, result.stdout) == (3, "inactive\n")


def test_with_valid_env_and_credentials_it_runs(tmp_path: Path) -> None:
    vps = make_vps(tmp_path)
    configure(vps, env=env_text(), creds=credentials())
    restart(vps)
    props = settled(vps)
    assert props == {
        "ActiveState": "active", "SubState": "running", "NRestarts": "0",
        "Result": "success", "ExecMainStatus": "0",
    }  # fmt: skip
    assert vps.systemd.systemctl(["is-active", UNIT_NAME]).stdout == "active\n"
    journal = vps.systemd.systemctl(["status", UNIT_NAME])
    assert journal.exit_status == 0 and "Active: active (running)" in journal.stdout
    out = vps.systemd.journalctl(["-u", UNIT_NAME, "-n", "1", "--no-pager"]).stdout
    assert out.endswith("Rachel8 is running. Listening for messages...\n") and " rc-1 bun[" in out
    shown = vps.describe()["rachel8"]
    assert shown["ActiveState"] == "active" and shown["journal_tail"][-1].startswith("Rachel8")


NO_REFRESH = json.dumps({"claudeAiOauth": {"accessToken": "a"}})
BAD_EXPIRY = json.dumps(
    {"claudeAiOauth": {"accessToken": "a", "refreshToken": "b", "expiresAt": "x", "scopes": []}}
)
OWNER = "OWNER_TELEGRAM_USER_ID"
BAD_ENV = [
    ({"TELEGRAM_BOT_TOKEN": "12345:short"}, "TELEGRAM_BOT_TOKEN: Invalid format"),
    ({OWNER: "0"}, f"{OWNER}: Must be a positive integer"),
    ({OWNER: "abc"}, f"{OWNER}: Expected number"),
    ({OWNER: None}, f"{OWNER}: Expected number"),
    ({"SHARED_FOLDER_PATH": ""}, "Shared folder path is required"),
    ({"SHARED_FOLDER_PATH": "/srv/none"}, "SHARED_FOLDER_PATH /srv/none is not a directory"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL: Invalid enum value"),
    ({"AI_PROVIDER": None}, "AI_PROVIDER is codex"),
    ({"AI_PROVIDER": "codex"}, "AI_PROVIDER is codex"),
]
BAD_CREDENTIALS = [
    (None, None, None, "credentials"),
    (credentials(), ROOT, None, "owned by root, not rachel"),
    (credentials(), None, 0o644, "mode 0644, must be 0600"),
    ("{not json", None, None, "not valid JSON"),
    (NO_REFRESH, None, None, "refreshToken missing"),
    (BAD_EXPIRY, None, None, "expiresAt is not an integer"),
]


@pytest.mark.parametrize(
    ("env", "creds", "owner", "mode", "says"),
    [(env_text(**change), credentials(), None, None, says) for change, says in BAD_ENV]
    + [(env_text(), *case) for case in BAD_CREDENTIALS],
)
def test_an_invalid_value_crash_loops_until_the_start_limit(
    tmp_path: Path, env: str, creds: str | None, owner: tuple[int, int] | None,
    mode: int | None, says: str,
) -> None:  # fmt: skip
    vps = make_vps(tmp_path)
    configure(vps, env=env, creds=creds)
    if owner is not None:
        vps.fs.owners.set(LAYOUT.credentials_path, *owner)
    if mode is not None:
        (vps.root / LAYOUT.credentials_path.lstrip("/")).chmod(mode)
    restart(vps)
    props = wait_for(lambda: show(vps)["Result"] == "start-limit-hit" and show(vps), what="failed")
    # Three starts in StartLimitIntervalSec: the third scheduled restart is refused.
    assert props == {
        "ActiveState": "failed", "SubState": "failed", "NRestarts": "3",
        "Result": "start-limit-hit", "ExecMainStatus": "1",
    }  # fmt: skip
    journal = "\n".join(vps.systemd.journal(UNIT_NAME))
    assert says in journal
    assert "Main process exited, code=exited, status=1/FAILURE" in journal
    assert "Start request repeated too quickly." in journal
    assert vps.systemd.systemctl(["is-active", UNIT_NAME]).stdout == "failed\n"


def test_the_crash_loop_as_systemd_shows_it_in_time(tmp_path: Path) -> None:
    vps = make_vps(tmp_path)
    moved = ManualTime()
    vps.systemd.clock = Clock(1.0, source=moved)
    configure(vps, env=env_text(OWNER_TELEGRAM_USER_ID="0"), creds=credentials())
    restart(vps)
    # Rachel8 is up for a moment: one `is-active` right after the restart is not enough.
    assert show(vps)["ActiveState"] == "active"
    moved.now = 1.0
    assert show(vps) == {
        "ActiveState": "activating", "SubState": "auto-restart", "NRestarts": "0",
        "Result": "exit-code", "ExecMainStatus": "1",
    }  # fmt: skip
    assert vps.systemd.systemctl(["is-active", UNIT_NAME]).stdout == "activating\n"
    moved.now = 11.0  # RestartSec=10 passed: restarted once, crashed again
    assert show(vps)["NRestarts"] == "1"
    moved.now = 40.0
    assert show(vps)["Result"] == "start-limit-hit" and show(vps)["NRestarts"] == "3"
    # A manual restart within the interval is refused too, until reset-failed.
    refused = vps.systemd.systemctl(["restart", UNIT_NAME])
    assert refused.exit_status == 1 and "attempted too often" in refused.stderr
    configure(vps, env=env_text())
    assert vps.systemd.systemctl(["reset-failed", UNIT_NAME]).exit_status == 0
    restart(vps)
    moved.now = 60.0
    assert show(vps)["ActiveState"] == "active" and show(vps)["NRestarts"] == "0"


@pytest.mark.parametrize(
    ("change", "status", "says"),
    [
        ("User=rachel\n", "217", "Failed at step USER"),
        (f"WorkingDirectory={LAYOUT.clone_dir}\n", "200", "Failed at step CHDIR"),
        (f"ExecStart={LAYOUT.bun_path} run src/index.ts\n", "203", "Failed at step EXEC"),
    ],
)
def test_systemd_refuses_what_it_cannot_spawn(
    tmp_path: Path, change: str, status: str, says: str
) -> None:
    replacement = {
        "User=rachel\n": "User=nobody-here\n",
        f"WorkingDirectory={LAYOUT.clone_dir}\n": "WorkingDirectory=/home/rachel/missing\n",
        f"ExecStart={LAYOUT.bun_path} run src/index.ts\n": "ExecStart=bun run src/index.ts\n",
    }[change]
    vps = make_vps(tmp_path, unit=UNIT.replace(change, replacement))
    configure(vps, env=env_text(), creds=credentials())
    restart(vps)
    props = wait_for(lambda: show(vps)["ActiveState"] == "failed" and show(vps), what="failed")
    assert props["ExecMainStatus"] == status
    assert says in "\n".join(vps.systemd.journal(UNIT_NAME))


def test_claude_must_resolve_on_the_units_path(tmp_path: Path) -> None:
    unit = UNIT.replace(f"Environment=PATH={LAYOUT.service_path_env}\n", "")
    vps = make_vps(tmp_path, unit=unit)
    configure(vps, env=env_text(), creds=credentials())
    restart(vps)
    wait_for(lambda: show(vps)["ActiveState"] == "failed", what="failed")
    assert "Claude Code executable not found on PATH" in "\n".join(vps.systemd.journal(UNIT_NAME))


def test_show_answers_property_lists_and_unknown_units(tmp_path: Path) -> None:
    vps = make_vps(tmp_path)
    listed = vps.systemd.systemctl(["show", UNIT_NAME, "--property=SubState,ActiveState"])
    # systemd's order, not the order asked for.
    assert listed.stdout == "ActiveState=inactive\nSubState=dead\n"
    value = vps.systemd.systemctl(["show", "-p", "NRestarts", "--value", UNIT_NAME])
    assert value.stdout == "0\n"
    unknown = vps.systemd.systemctl(["show", "nosuch.service", "-p", "LoadState"])
    assert unknown.stdout == "LoadState=not-found\n"
    assert vps.systemd.systemctl(["status", "nosuch"]).exit_status == 4
    assert vps.systemd.journalctl(["-u", "nosuch", "--no-pager"]).stdout == "-- No entries --\n"
