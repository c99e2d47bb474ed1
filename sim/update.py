"""The update script on a simulated VPS: its stages, as `vps_scripts/update.py` runs them.

`core.cloud.vps_contract` ("Releases", "Updates") is the contract and the
script the reference; this is what running `UPDATE_SCRIPT_PATH <stage> <arg>`
over SSH does to the box (`sim.shell` dispatches it):

- as a shell runs a program: no such file is 127 (`not found`), a file root
  may not execute is 126 (`Permission denied`); and the simulator holds the
  box to the contract: the script must be root's with mode 0700 (else 126,
  saying so), so that a control plane uploading it otherwise fails a test;
- `prepare COMMIT`: a legacy clone is moved into its release dir and linked
  (step `layout`); a prepared release is ok at once; else the clone (the
  catalogue's commits only, `sim.rachel8`: an unknown one fails as git does),
  `bun install --frozen-lockfile` (a stale lockfile fails it), the running
  release's `.env` copied (0600, the user's), the `.partial` dir renamed
  into place;
- `switch COMMIT`: the release must be prepared; the `.env` of now copied
  into it, the link repointed (a new link renamed over it), the state file
  written, Rachel8 reset-failed and restarted (only if not active when
  nothing changed), the agent started (`--no-block`), the unit's properties
  reported; the release then runs as its catalogue entry says
  (`sim.rachel8_service`);
- `prune KEEP`: `.partial` leftovers and the oldest releases beyond `KEEP`
  removed, the current and previous kept.

Each stage prints the script's one JSON line and exits as it does (0 ok,
1 failed, 2 bad arguments). A stage runs on the simulator's loop, one at a
time per box, so the script's lock is never contended here. A `prepare` that
installs a release (not one found prepared, or running) takes
RACHEL_SIM_UPDATE_TIME of the box's simulated time (`seconds`): the SSH
server answers that much later, the stage's work done at the end of the wait.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field

from core.cloud import vps_contract as contract
from sim import releases
from sim.accounts import Account
from sim.cloudconfig import parse_env_file
from sim.releases import StepFailed
from sim.rootfs import EXECUTE, RootFs
from sim.systemctl import Result
from sim.systemd import Systemd

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
NOT_THE_CONTRACT = (
    "{path}: must be root's with mode 0700 (it is {mode:04o}, uid {uid}; "
    "the simulator holds the box to the contract)"
)


@dataclass
class _Stage:
    """One stage's run: the step it is at, what it printed, its outcome's fields."""

    name: str
    step: str = contract.STEP_ARGUMENTS
    out: list[str] = field(default_factory=list)
    commit: str | None = None
    previous: str | None = None
    service: dict[str, str] | None = None
    removed: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.out.append(text + "\n")


class UpdateRun:
    """The update script's run on one box."""

    def __init__(self, fs: RootFs, systemd: Systemd) -> None:
        self.fs = fs
        self.systemd = systemd
        manifest = self._manifest()
        self.layout = contract.Layout(manifest.get(contract.USER_VAR) or "rachel")
        self.repo = manifest.get(contract.REPO_VAR, "")
        self.bun_version = manifest.get(contract.BUN_VERSION_VAR)

    def _manifest(self) -> dict[str, str]:
        real = self.fs.real(contract.INSTALL_ENV_PATH, "/")
        return parse_env_file(real.read_text(errors="replace")) if real.is_file() else {}

    def _owner(self) -> tuple[int, int]:
        account: Account | None = self.fs.accounts.get(self.layout.user)
        if account is None:
            raise StepFailed(1, f"there is no user {self.layout.user}\n")
        return account.uid, account.gid

    # -- the release dirs ---------------------------------------------------------

    def _head(self, directory: str) -> str | None:
        release = releases.release_of(self.fs, directory)
        return release.commit if release is not None else None

    def _prepared(self, commit: str) -> bool:
        directory = self.layout.release_dir(commit)
        return (
            self._head(directory) == commit
            and self.fs.real(f"{directory}/node_modules", "/").is_dir()
        )

    def _migrate(self, stage: _Stage) -> None:
        stage.step = contract.STEP_LAYOUT
        clone = self.layout.clone_dir
        real = self.fs.real(clone, "/")
        if real.is_symlink():
            if releases.linked_commit(self.fs, self.layout) is None:
                raise StepFailed(1, f"{clone} links to {os.readlink(real)}, not a release\n")
            return
        commit = self._head(clone) if real.is_dir() else None
        if commit is None:
            raise StepFailed(1, f"{clone} is not a Rachel8 clone with a detached commit\n")
        release = self.layout.release_dir(commit)
        if self.fs.real(release, "/").exists():
            raise StepFailed(1, f"{clone} and {release} both exist\n")
        owner = self._owner()
        self.fs.makedirs(self.layout.releases_dir, 0o755, owner)
        real.replace(self.fs.real(release, "/"))
        self.fs.owners.move(clone, release)
        stage.note(f"moved {clone} to {release}")
        releases.point_link(self.fs, self.layout, commit, owner)

    def _copy_env(self, stage: _Stage, source: str, directory: str) -> None:
        stage.step = contract.STEP_ENV
        dotenv = self.fs.real(f"{self.layout.release_dir(source)}/.env", "/")
        if not dotenv.is_file():
            raise StepFailed(
                1, "cannot read the running release's .env: No such file or directory\n"
            )
        data = dotenv.read_bytes()
        self.fs.write(f"{directory}/.env", data, contract.SECRET_MODE, owner=self._owner())
        stage.note(f"copied .env of {source} into {directory}")

    # -- the stages ------------------------------------------------------------------

    def prepare(self, stage: _Stage, commit: str) -> None:
        self._migrate(stage)
        current = stage.previous = releases.linked_commit(self.fs, self.layout)
        release = self.layout.release_dir(commit)
        if self._prepared(commit) or commit == current:
            stage.note(f"{release} is prepared already")
            return
        if current is None:
            raise StepFailed(1, f"{self.layout.clone_dir} links to no release\n")
        owner = self._owner()
        partial = release + contract.PARTIAL_SUFFIX
        stage.step = contract.STEP_CLONE
        if not self.repo:
            raise StepFailed(1, f"{contract.REPO_VAR} is not set in {contract.INSTALL_ENV_PATH}\n")
        releases.remove(self.fs, partial)
        releases.remove(self.fs, release)
        stage.out.append(releases.clone(self.fs, partial, self.repo, commit, owner))
        stage.step = contract.STEP_DEPENDENCIES
        stage.out.append(releases.bun_install(self.fs, partial, owner, self.bun_version))
        self._copy_env(stage, current, partial)
        stage.step = contract.STEP_CLONE
        self.fs.real(partial, "/").replace(self.fs.real(release, "/"))
        self.fs.owners.move(partial, release)
        os.utime(self.fs.real(release, "/"))
        stage.note(f"prepared {release}")

    def _state(self) -> dict[str, str]:
        real = self.fs.real(contract.UPDATE_STATE_PATH, "/")
        try:
            found = json.loads(real.read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(found, dict):
            return {}
        return {k: v for k, v in found.items() if isinstance(v, str) and _COMMIT.match(v)}

    def _systemctl(self, stage: _Stage, *args: str) -> Result:
        stage.note("$ systemctl " + " ".join(args))
        done = self.systemd.systemctl(list(args))
        stage.out.append(done.stdout + done.stderr)
        if done.exit_status:
            raise StepFailed(done.exit_status, "")
        return done

    def switch(self, stage: _Stage, commit: str) -> None:
        self._migrate(stage)
        current = stage.previous = releases.linked_commit(self.fs, self.layout)
        stage.step = contract.STEP_RELEASE
        release = self.layout.release_dir(commit)
        if not self._prepared(commit):
            raise StepFailed(1, f"{release} is not prepared (prepare {commit} first)\n")
        state: dict[str, str | None] = dict(self._state())
        if commit != current:
            if current is not None:
                self._copy_env(stage, current, release)
            stage.step = contract.STEP_LINK
            releases.point_link(self.fs, self.layout, commit, self._owner())
            stage.note(f"{self.layout.clone_dir} -> {self.layout.link_target(commit)}")
            state = {"current": commit, "previous": current}
        elif state.get("current") != commit:
            state = {"current": commit, "previous": None}
        text = (json.dumps(state) + "\n").encode()
        self.fs.write(contract.UPDATE_STATE_PATH, text, 0o644)
        stage.step = contract.STEP_RESTART
        unit = contract.SERVICE_UNIT
        if commit != current or self.systemd.active_state(unit) != "active":
            self._systemctl(stage, "reset-failed", unit)
            self._systemctl(stage, "restart", unit)
        try:
            self._systemctl(stage, "start", "--no-block", contract.AGENT_SERVICE_UNIT)
        except StepFailed:
            stage.note(f"{contract.AGENT_SERVICE_UNIT} did not start")
        props = self.systemd.properties(unit)
        stage.service = {name: props.get(name, "") for name in contract.SERVICE_PROPERTIES}

    def prune(self, stage: _Stage, keep: int) -> None:
        stage.step = contract.STEP_PRUNE
        state = self._state()
        current = stage.commit = releases.linked_commit(self.fs, self.layout)
        stage.previous = state.get("previous") if state.get("current") == current else None
        kept = {c for c in (current, stage.previous) if c}
        directory = self.fs.real(self.layout.releases_dir, "/")
        others: list[tuple[float, str]] = []
        suffix = contract.PARTIAL_SUFFIX
        for entry in sorted(directory.iterdir()) if directory.is_dir() else []:
            name = entry.name
            if name.endswith(suffix) and _COMMIT.match(name.removesuffix(suffix)):
                releases.remove(self.fs, f"{self.layout.releases_dir}/{name}")
                stage.note(f"removed {self.layout.releases_dir}/{name}")
            elif _COMMIT.match(name) and name not in kept and not entry.is_symlink():
                others.append((entry.stat().st_mtime, name))
        others.sort(reverse=True)
        for _, name in others[max(0, keep - len(kept)) :]:
            releases.remove(self.fs, self.layout.release_dir(name))
            stage.removed.append(name)
            stage.note(f"removed {self.layout.release_dir(name)}")

    # -- the run ---------------------------------------------------------------------

    def run(self, args: list[str]) -> Result:
        """`UPDATE_SCRIPT_PATH ARGS...`: the stage's JSON line and exit status."""
        name = args[0] if args and args[0] in contract.UPDATE_STAGES else ""
        stage = _Stage(name)
        failed: StepFailed | None = StepFailed(2, "usage: prepare|switch COMMIT, prune KEEP\n")
        if name and len(args) == 2:
            failed = self._execute(stage, args[1])
        if failed is not None and failed.output:
            stage.out.append(f"step {stage.step} failed: {failed.output}")
        result = {
            "ok": failed is None,
            "stage": stage.name,
            "commit": stage.commit,
            "previous": stage.previous,
            "failed_step": stage.step if failed is not None else None,
            "exit_status": failed.exit_status if failed is not None else None,
            "log_tail": "".join(stage.out)[-contract.MAX_LOG_TAIL :],
            "service": stage.service,
            "removed": stage.removed,
        }
        header = f"== {time.ctime()}: {' '.join(args[:2])[:100]}\n"
        self.fs.write(
            contract.UPDATE_LOG_PATH, (header + "".join(stage.out)).encode(), 0o600, append=True
        )
        status = 0 if failed is None else 2 if stage.step == contract.STEP_ARGUMENTS else 1
        return Result(status, json.dumps(result) + "\n")

    def _execute(self, stage: _Stage, arg: str) -> StepFailed | None:
        if stage.name in (contract.STAGE_PREPARE, contract.STAGE_SWITCH):
            if not _COMMIT.match(arg):
                return StepFailed(2, f"not a full commit id: {arg[:60]!r}\n")
            stage.commit = arg
        elif not arg.isdigit():
            return StepFailed(2, f"not a number of releases to keep: {arg[:20]!r}\n")
        try:
            if stage.name == contract.STAGE_PREPARE:
                self.prepare(stage, arg)
            elif stage.name == contract.STAGE_SWITCH:
                self.switch(stage, arg)
            else:
                self.prune(stage, int(arg))
        except StepFailed as exc:
            return exc
        return None


def seconds(fs: RootFs, systemd: Systemd, args: list[str], install_seconds: float) -> float:
    """Simulated seconds the script's run with `args` takes before it answers.

    A `prepare` of a full commit that is neither prepared nor running clones it
    and installs its dependencies: `install_seconds` (also when the install then
    fails: `bun install` runs before it fails). Every other run is instant.
    """
    if install_seconds <= 0 or len(args) != 2 or args[0] != contract.STAGE_PREPARE:
        return 0.0
    commit = args[1]
    if not _COMMIT.match(commit) or not fs.real(contract.UPDATE_SCRIPT_PATH, "/").is_file():
        return 0.0
    box = UpdateRun(fs, systemd)
    if box._prepared(commit) or releases.linked_commit(fs, box.layout) == commit:
        return 0.0
    return install_seconds


def run(fs: RootFs, systemd: Systemd, account: Account, args: list[str]) -> Result:
    """Run the uploaded script as `account` would from a shell (see the module's doc)."""
    path = contract.UPDATE_SCRIPT_PATH
    real = fs.real(path, "/")
    if not real.is_file():
        return Result(127, stderr=f"sh: 1: {path}: not found\n")
    if not (fs.reachable(path, account) and fs.allows(path, account, EXECUTE)):
        return Result(126, stderr=f"sh: 1: {path}: Permission denied\n")
    mode, (uid, _gid) = fs.mode(path), fs.owners.get(path)
    if mode != contract.UPDATE_SCRIPT_MODE or uid != 0:
        return Result(126, stderr=NOT_THE_CONTRACT.format(path=path, mode=mode, uid=uid) + "\n")
    return UpdateRun(fs, systemd).run(args)
