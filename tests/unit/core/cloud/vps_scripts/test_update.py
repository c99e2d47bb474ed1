"""The update script as uploaded to a VPS, run here as a process against a temp root.

What needs a Debian box is stood in for on PATH: `runuser` (runs the command
as this user), `systemctl` (records what it was asked, answers `show`) and
Bun (`bun install --frozen-lockfile` fails when the checkout says its
lockfile is stale). Git is real, cloning a local repository; the script,
its stages, its JSON line and its files are the shipped code.
"""

from __future__ import annotations

import getpass
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.cloud import vps_contract as vps
from core.cloud import vps_scripts
from core.cloud.vps_update import parse_result, update_constants

SECRET = "123456789:planted-bot-token-abcdefghijklmnopqrstuvw"
ENV_TEXT = f"TELEGRAM_BOT_TOKEN={SECRET}\nNODE_ENV=production\n"


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o755)


@dataclass
class Box:
    """A temp root with the script rendered for it, and a repository of three commits."""

    root: Path
    script: Path
    repo: Path
    commits: list[str]
    bad: str  # a commit whose lockfile is stale

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def link(self) -> Path:
        return self.home / "rachel8"

    def release(self, commit: str) -> Path:
        return self.home / "releases" / commit

    def run(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, str(self.script), *args],
            capture_output=True,
            text=True,
            env={"PATH": f"{self.root / 'bin'}:/usr/bin:/bin"},
            check=False,
        )
        lines = done.stdout.splitlines()
        assert len(lines) == 1, (done.stdout, done.stderr)
        return done.returncode, json.loads(lines[0])

    def systemctl_calls(self) -> list[str]:
        log = self.root / "systemctl.log"
        return log.read_text().splitlines() if log.exists() else []

    def install(self, commit: str, *, legacy: bool = False) -> None:
        """What the install leaves: a release of `commit` with `.env`, linked (or, legacy, the
        clone in place)."""
        where = self.link if legacy else self.release(commit)
        where.parent.mkdir(parents=True, exist_ok=True)
        _git("clone", "-q", str(self.repo), str(where), cwd=self.root)
        _git("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit, cwd=where)
        (where / "node_modules").mkdir()
        (where / ".env").write_text(ENV_TEXT)
        (where / ".env").chmod(0o600)
        if not legacy:
            self.link.symlink_to(f"releases/{commit}")


@pytest.fixture
def box(tmp_path: Path) -> Box:
    repo = tmp_path / "origin"
    repo.mkdir()
    _git("init", "-q", cwd=repo)
    commits = []
    for n in range(4):
        (repo / "index.ts").write_text(f"// release {n}\n")
        if n == 3:
            (repo / "STALE_LOCKFILE").write_text("package.json gained a dependency\n")
        _git("add", ".", cwd=repo)
        _git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", f"r{n}", cwd=repo)
        commits.append(_git("rev-parse", "HEAD", cwd=repo))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # runuser -u USER -- env -i ... ARGV: as this user, the command itself.
    _executable(bindir / "runuser", '#!/bin/sh\nshift 3\nexec "$@"\n')
    _executable(
        bindir / "systemctl",
        f'#!/bin/sh\necho "$*" >> {tmp_path}/systemctl.log\n'
        'case "$*" in\n'
        f"  *--value*) cat {tmp_path}/active 2>/dev/null || echo inactive ;;\n"
        "  show*) printf 'ActiveState=active\\nSubState=running\\nNRestarts=0\\n"
        "Result=success\\nExecMainStatus=0\\n' ;;\n"
        "esac\n",
    )
    _executable(
        bindir / "bun",
        "#!/bin/sh\n"
        'if [ -e STALE_LOCKFILE ]; then echo "error: lockfile had changes, but lockfile is '
        'frozen"; exit 1; fi\nmkdir node_modules && echo "3 packages installed"\n',
    )
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/install.env").write_text(f"RACHEL8_REPO='{repo}'\n")
    layout = vps.Layout(getpass.getuser())
    home = str(tmp_path / "home")
    constants = update_constants(layout) | {
        "INSTALL_ENV": str(tmp_path / "etc/install.env"),
        "STATE_PATH": str(tmp_path / "var/releases.json"),
        "LOCK_PATH": str(tmp_path / "var/update.lock"),
        "LOG_PATH": str(tmp_path / "update.log"),
        "HOME": home,
        "CLONE_DIR": f"{home}/rachel8",
        "RELEASES_DIR": f"{home}/releases",
        "BUN_DIR": str(bindir),
        "BUN_PATH": str(bindir / "bun"),
        "PATH_ENV": f"{bindir}:/usr/bin:/bin",
    }
    script = tmp_path / "rachel-cloud-update"
    script.write_text(vps_scripts.render(vps_scripts.UPDATE, constants))
    return Box(tmp_path, script, repo, commits[:3], commits[3])


def test_prepare_installs_beside_the_running_release_with_its_env(box: Box) -> None:
    old, new = box.commits[:2]
    box.install(old)
    status, result = box.run("prepare", new)
    assert status == 0, result
    assert parse_result(json.dumps(result), "prepare").ok
    assert (result["commit"], result["previous"], result["failed_step"]) == (new, old, None)
    release = box.release(new)
    assert _git("rev-parse", "HEAD", cwd=release) == new
    assert (release / "node_modules").is_dir()
    env = release / ".env"
    assert env.read_text() == ENV_TEXT and stat.S_IMODE(env.stat().st_mode) == 0o600
    assert env.stat().st_uid == os.getuid()
    assert os.readlink(box.link) == f"releases/{old}", "prepare switches nothing"
    assert not Path(f"{release}.partial").exists()
    assert box.systemctl_calls() == []
    log = box.root / "update.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert SECRET not in log.read_text() and SECRET not in json.dumps(result)

    again_status, again = box.run("prepare", new)
    assert again_status == 0 and "prepared already" in again["log_tail"]
    assert "git clone" not in again["log_tail"]


def test_switch_repoints_the_link_restarts_and_keeps_the_previous(box: Box) -> None:
    old, new = box.commits[:2]
    box.install(old)
    assert box.run("prepare", new)[0] == 0
    status, result = box.run("switch", new)
    assert status == 0, result
    assert (result["commit"], result["previous"]) == (new, old)
    assert os.readlink(box.link) == f"releases/{new}"
    assert json.loads((box.root / "var/releases.json").read_text()) == {
        "current": new,
        "previous": old,
    }
    calls = box.systemctl_calls()
    assert "reset-failed rachel8.service" in calls and "restart rachel8.service" in calls
    assert calls[-2:-1] == ["start --no-block rachel-cloud-agent.service"]
    parsed = parse_result(json.dumps(result), "switch")
    assert parsed.service is not None and parsed.service.running

    # The same switch again, the unit active: no restart.
    (box.root / "active").write_text("active\n")
    before = len(box.systemctl_calls())
    assert box.run("switch", new)[0] == 0
    assert not any("restart" in c for c in box.systemctl_calls()[before:])
    # And back: the old release is still there, with the .env of now.
    (box.release(new) / ".env").write_text(ENV_TEXT + "LOG_LEVEL=debug\n")
    status, back = box.run("switch", old)
    assert status == 0 and (back["commit"], back["previous"]) == (old, new)
    assert os.readlink(box.link) == f"releases/{old}"
    assert (box.release(old) / ".env").read_text().endswith("LOG_LEVEL=debug\n")


def test_a_stale_lockfile_fails_prepare_at_dependencies(box: Box) -> None:
    box.install(box.commits[0])
    status, result = box.run("prepare", box.bad)
    assert status == 1
    assert (result["ok"], result["failed_step"], result["exit_status"]) == (
        False,
        "dependencies",
        1,
    )
    assert "lockfile had changes" in result["log_tail"]
    assert not box.release(box.bad).exists()
    assert os.readlink(box.link) == f"releases/{box.commits[0]}"


def test_an_unknown_commit_fails_the_clone(box: Box) -> None:
    box.install(box.commits[0])
    unknown = "0123456789abcdef0123456789abcdef01234567"
    status, result = box.run("prepare", unknown)
    assert status == 1 and result["failed_step"] == "clone"
    assert result["exit_status"] == 128
    assert f"reference is not a tree: {unknown}" in result["log_tail"]


def test_switch_refuses_a_release_not_prepared(box: Box) -> None:
    box.install(box.commits[0])
    status, result = box.run("switch", box.commits[1])
    assert status == 1 and result["failed_step"] == "release"
    assert os.readlink(box.link) == f"releases/{box.commits[0]}"
    assert box.systemctl_calls() == []


def test_a_legacy_clone_moves_into_its_release_first(box: Box) -> None:
    old, new = box.commits[:2]
    box.install(old, legacy=True)
    status, result = box.run("prepare", new)
    assert status == 0, result
    assert os.readlink(box.link) == f"releases/{old}"
    assert (box.release(old) / ".env").read_text() == ENV_TEXT
    assert (box.release(new) / ".env").read_text() == ENV_TEXT


def test_prune_keeps_the_current_the_previous_and_the_newest(box: Box) -> None:
    first, second, third = box.commits
    box.install(first)
    for commit in (second, third):
        assert box.run("prepare", commit)[0] == 0
    os.utime(box.release(second), (1, 1))  # the oldest prepared
    assert box.run("switch", third)[0] == 0  # current third, previous first
    leftover = Path(f"{box.release(box.bad)}.partial")
    leftover.mkdir()
    status, result = box.run("prune", "2")
    assert status == 0, result
    assert (result["commit"], result["previous"], result["removed"]) == (third, first, [second])
    assert sorted(p.name for p in (box.home / "releases").iterdir()) == sorted([first, third])
    assert box.run("prune", "0")[1]["removed"] == []


@pytest.mark.parametrize(
    "args", [("prepare", "main"), ("switch",), ("prune", "-1"), ("deploy", "x"), ()]
)
def test_bad_arguments_exit_2_with_an_outcome(box: Box, args: tuple[str, ...]) -> None:
    status, result = box.run(*args)
    assert status == 2
    assert (result["ok"], result["failed_step"], result["exit_status"]) == (False, "arguments", 2)
