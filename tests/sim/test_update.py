"""The update script's stages on a simulated VPS (`sim.update`), run as a shell runs them."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from core.cloud import vps_contract as contract
from sim import rachel8, sshd
from sim.rachel8 import BAD_RELEASES, CURRENT_COMMIT, NEWER_COMMIT
from sim.shell import Shell
from sim.telegram import TelegramSim, bot_id_of
from sim.vps import Vps
from tests.sim.helpers import wait_for
from tests.sim.rachel8_data import (
    LAYOUT,
    TOKEN,
    configure,
    credentials,
    env_text,
    make_vps,
)

SCRIPT = contract.UPDATE_SCRIPT_PATH
UNIT = contract.SERVICE_UNIT
OLDER = next(c for c, r in rachel8.RELEASES.items() if r.defect is None and r.version < "0.9")


def _vps(tmp_path: Path, telegram: TelegramSim | None = None) -> Vps:
    """An installed, configured VPS running CURRENT_COMMIT, with the update script uploaded."""
    vps = make_vps(tmp_path, telegram=telegram)
    configure(vps, env=env_text(), creds=credentials())
    assert vps.systemd.systemctl(["restart", UNIT]).exit_status == 0
    vps.fs.write(SCRIPT, b"#!/usr/bin/python3\n# rachel-cloud update\n", 0o700)
    return vps


def stage(vps: Vps, *args: str) -> tuple[int, dict[str, Any]]:
    done = Shell(vps.fs, vps.systemd).run(" ".join([SCRIPT, *args]))
    lines = done.stdout.splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    return done.exit_status, json.loads(lines[0])


def props(vps: Vps) -> dict[str, str]:
    return vps.systemd.properties(UNIT)


def linked(vps: Vps) -> str:
    return os.readlink(vps.fs.real(LAYOUT.clone_dir, "/"))


def test_prepare_and_switch_run_the_new_release_with_the_same_env(tmp_path: Path) -> None:
    vps = _vps(tmp_path)
    status, prepared = stage(vps, "prepare", NEWER_COMMIT)
    assert status == 0 and prepared["ok"], prepared
    assert (prepared["commit"], prepared["previous"]) == (NEWER_COMMIT, CURRENT_COMMIT)
    env = f"{LAYOUT.release_dir(NEWER_COMMIT)}/.env"
    account = vps.fs.accounts.get(LAYOUT.user)
    assert account is not None
    assert vps.fs.owners.get(env) == (account.uid, account.gid)
    assert vps.fs.mode(env) == contract.SECRET_MODE
    assert vps.fs.real(env, "/").read_text() == env_text()
    assert linked(vps) == LAYOUT.link_target(CURRENT_COMMIT)
    assert stage(vps, "prepare", NEWER_COMMIT)[1]["log_tail"].endswith("prepared already\n")

    status, switched = stage(vps, "switch", NEWER_COMMIT)
    assert status == 0 and switched["ok"], switched
    assert linked(vps) == LAYOUT.link_target(NEWER_COMMIT)
    assert switched["service"]["ActiveState"] == "active"
    state = json.loads(vps.fs.real(contract.UPDATE_STATE_PATH, "/").read_text())
    assert state == {"current": NEWER_COMMIT, "previous": CURRENT_COMMIT}
    head = vps.fs.real(LAYOUT.git_head_path, "/").read_text().strip()
    assert head == NEWER_COMMIT  # what the agent reads, through the link
    assert "Rachel8 is running. Listening for messages..." in wait_for(
        lambda: "\n".join(vps.systemd.journal(UNIT, 3)) or None
    )
    before = int(props(vps)["NRestarts"]), len(vps.systemd.journal(UNIT))
    assert stage(vps, "switch", NEWER_COMMIT)[0] == 0
    assert "Stopping" not in "".join(vps.systemd.journal(UNIT)[before[1] :])


@pytest.mark.parametrize(
    ("mode", "owner", "status", "words"),
    [
        (None, None, 127, "not found"),
        (0o600, (0, 0), 126, "Permission denied"),
        (0o755, (0, 0), 126, "must be root's with mode 0700"),
        (0o700, (1000, 1000), 126, "must be root's with mode 0700"),
    ],
)
def test_the_box_holds_the_script_to_the_contract(
    tmp_path: Path, mode: int | None, owner: tuple[int, int] | None, status: int, words: str
) -> None:
    vps = _vps(tmp_path)
    real = vps.fs.real(SCRIPT, "/")
    if mode is None:
        real.unlink()
    else:
        real.chmod(mode)
        assert owner is not None
        vps.fs.owners.set(SCRIPT, *owner)
    done = Shell(vps.fs, vps.systemd).run(f"{SCRIPT} prepare {NEWER_COMMIT}")
    assert done.exit_status == status and words in done.stderr
    assert done.stdout == ""
    assert not vps.fs.real(LAYOUT.release_dir(NEWER_COMMIT), "/").exists()


def test_a_stale_lockfile_fails_prepare_and_switches_nothing(tmp_path: Path) -> None:
    vps = _vps(tmp_path)
    bad = BAD_RELEASES[rachel8.INSTALL_FAILS].commit
    status, result = stage(vps, "prepare", bad)
    assert status == 1
    assert (result["failed_step"], result["exit_status"]) == (contract.STEP_DEPENDENCIES, 1)
    assert "lockfile had changes, but lockfile is frozen" in result["log_tail"]
    assert not vps.fs.real(LAYOUT.release_dir(bad), "/").exists()
    status, refused = stage(vps, "switch", bad)
    assert status == 1 and refused["failed_step"] == contract.STEP_RELEASE
    assert linked(vps) == LAYOUT.link_target(CURRENT_COMMIT)


def test_an_unknown_commit_fails_the_clone_as_git_does(tmp_path: Path) -> None:
    vps = _vps(tmp_path)
    unknown = "0123456789abcdef0123456789abcdef01234567"
    status, result = stage(vps, "prepare", unknown)
    assert status == 1
    assert (result["failed_step"], result["exit_status"]) == (contract.STEP_CLONE, 128)
    assert f"fatal: reference is not a tree: {unknown}" in result["log_tail"]


def _switch_to(vps: Vps, kind: str) -> None:
    commit = BAD_RELEASES[kind].commit
    assert stage(vps, "prepare", commit)[0] == 0
    assert stage(vps, "switch", commit)[0] == 0


def test_a_release_that_crashes_at_start_crash_loops_and_switching_back_heals(
    tmp_path: Path,
) -> None:
    vps = _vps(tmp_path)
    _switch_to(vps, rachel8.CRASH_AT_START)
    failed = wait_for(lambda: props(vps)["Result"] == "start-limit-hit" and props(vps))
    assert failed["ActiveState"] == "failed"
    assert any("TypeError" in line for line in vps.systemd.journal(UNIT))
    status, back = stage(vps, "switch", CURRENT_COMMIT)
    assert status == 0 and back["service"]["ActiveState"] == "active"
    assert back["previous"] == BAD_RELEASES[rachel8.CRASH_AT_START].commit


def test_a_release_that_crashes_later_runs_for_a_minute_each_start(tmp_path: Path) -> None:
    vps = _vps(tmp_path)
    _switch_to(vps, rachel8.CRASH_LATER)
    started = vps.systemd.clock.now()
    assert props(vps)["ActiveState"] == "active"
    wait_for(lambda: int(props(vps)["NRestarts"]) >= 2, what="two restarts")
    journal = vps.systemd.journal(UNIT)
    assert any("Maximum call stack size exceeded" in line for line in journal)
    service = vps.systemd.services[UNIT]
    assert vps.systemd.clock.now() - started >= 2 * rachel8.CRASH_LATER_SECONDS
    assert service.result != "start-limit-hit", "a minute apart: under the start limit"


def test_a_release_in_webhook_mode_sets_a_webhook_and_stays_up(tmp_path: Path) -> None:
    telegram = TelegramSim()
    vps = _vps(tmp_path, telegram)
    _switch_to(vps, rachel8.POLLING_FAILS)
    bot = bot_id_of(TOKEN)
    assert bot is not None
    hook = wait_for(lambda: telegram.webhooks.get(bot))
    assert hook.url == "https://rc-1:8443/telegram"
    assert props(vps)["ActiveState"] == "active"
    assert stage(vps, "switch", CURRENT_COMMIT)[0] == 0
    # A polling release deletes the webhook as it starts (grammY's bot.start()).
    wait_for(lambda: bot not in telegram.webhooks, what="the webhook deleted")


def test_a_legacy_clone_is_moved_into_its_release_and_linked(tmp_path: Path) -> None:
    vps = _vps(tmp_path)
    link = vps.fs.real(LAYOUT.clone_dir, "/")
    link.unlink()
    release = LAYOUT.release_dir(CURRENT_COMMIT)
    vps.fs.real(release, "/").replace(link)
    vps.fs.owners.move(release, LAYOUT.clone_dir)
    status, result = stage(vps, "prepare", NEWER_COMMIT)
    assert status == 0, result
    assert linked(vps) == LAYOUT.link_target(CURRENT_COMMIT)
    assert vps.fs.real(f"{release}/.env", "/").read_text() == env_text()


def test_prune_keeps_the_current_the_previous_and_the_newest(tmp_path: Path) -> None:
    vps = _vps(tmp_path)
    older = [c for c, r in rachel8.RELEASES.items() if r.defect is None and c != CURRENT_COMMIT]
    for commit in older:
        assert stage(vps, "prepare", commit)[0] == 0
    assert stage(vps, "switch", NEWER_COMMIT)[0] == 0
    vps.fs.makedirs(f"{LAYOUT.release_dir(CURRENT_COMMIT)}.partial", 0o755)
    status, result = stage(vps, "prune", "3")
    assert status == 0
    assert (result["commit"], result["previous"]) == (NEWER_COMMIT, CURRENT_COMMIT)
    left = sorted(p.name for p in vps.fs.real(LAYOUT.releases_dir, "/").iterdir())
    assert len(left) == 3 and {NEWER_COMMIT, CURRENT_COMMIT} <= set(left)
    assert sorted(result["removed"]) == sorted(set(older) - set(left))


@pytest.mark.parametrize("args", [("prepare", "HEAD"), ("prune", "all"), ("rollback", "x")])
def test_bad_arguments_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    status, result = stage(_vps(tmp_path), *args)
    assert status == 2 and result["failed_step"] == contract.STEP_ARGUMENTS


def test_only_a_prepare_that_installs_takes_the_update_time(tmp_path: Path) -> None:
    vps = _vps(tmp_path)
    shell = Shell(vps.fs, vps.systemd, update_seconds=20.0)
    assert shell.seconds(f"{SCRIPT} prepare {NEWER_COMMIT}") == 20.0
    assert shell.seconds(f"sudo {SCRIPT} prepare {NEWER_COMMIT}; true") == 20.0
    # `bun install` runs before a stale lockfile fails it: the time is spent too.
    assert shell.seconds(f"{SCRIPT} prepare {BAD_RELEASES[rachel8.INSTALL_FAILS].commit}") == 20.0
    for instant in (
        f"{SCRIPT} prepare {CURRENT_COMMIT}",  # running: nothing to install
        f"{SCRIPT} switch {NEWER_COMMIT}",
        f"{SCRIPT} prune 3",
        f"{SCRIPT} prepare HEAD",
        f"systemctl restart {UNIT}",
        "echo 'unbalanced",
    ):
        assert shell.seconds(instant) == 0.0, instant
    assert Shell(vps.fs, vps.systemd).seconds(f"{SCRIPT} prepare {NEWER_COMMIT}") == 0.0
    assert stage(vps, "prepare", NEWER_COMMIT)[0] == 0
    assert shell.seconds(f"{SCRIPT} prepare {NEWER_COMMIT}") == 0.0  # prepared already
    vps.fs.real(SCRIPT, "/").unlink()
    assert shell.seconds(f"{SCRIPT} prepare {OLDER}") == 0.0  # not found


def test_an_installing_prepare_answers_its_scaled_time_later_over_ssh(tmp_path: Path) -> None:
    vps = _vps(tmp_path)  # time scale 0.001: 300 simulated seconds are 0.3 s
    key = asyncssh.generate_private_key("ssh-ed25519")

    async def prepare_twice() -> tuple[float, int, int]:
        acceptor = await sshd.listen(
            host="127.0.0.1",
            port=0,
            host_key=vps.host_key,
            fs=vps.fs,
            systemd=vps.systemd,
            authorized=lambda: {"root": {key.public_data}},
            connections=set(),
            update_seconds=300.0,
        )
        try:
            async with asyncssh.connect(
                "127.0.0.1",
                port=acceptor.get_port(),
                username="root",
                client_keys=[key],
                known_hosts=None,
            ) as conn:
                took, statuses = [], []
                for _ in range(2):
                    started = time.monotonic()
                    done = await conn.run(f"{SCRIPT} prepare {NEWER_COMMIT}")
                    took.append(time.monotonic() - started)
                    statuses.append(done.exit_status or 0)
        finally:
            acceptor.close()
        return took[0], statuses[0], statuses[1]

    first, status, again = asyncio.run(prepare_twice())
    assert (status, again) == (0, 0)  # the second found it prepared (ok at once, above)
    assert first >= 0.3
    assert vps.fs.real(f"{LAYOUT.release_dir(NEWER_COMMIT)}/node_modules", "/").is_dir()
