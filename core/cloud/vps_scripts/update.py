#!/usr/bin/python3
"""rachel-cloud update: a Rachel8 release installed beside the running one, switched to, pruned.

Uploaded by the control plane with every update and run as root, one stage
per command (core.cloud.vps_contract, "Releases" and "Updates"):
`prepare COMMIT`, `switch COMMIT`, `prune KEEP`. Each prints ONE line of
JSON, the stage's outcome, and exits 0 when it succeeded, 1 when a step
failed, 2 on bad arguments. Commands of the release run as the Rachel8 user
in a clean environment, as the install runs them. The full output goes to
LOG_PATH (0600) for an operator; the outcome's tail is bounded and holds no
value of Rachel8's `.env`. The standard library only.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import re
import shutil
import sys
import time
import traceback

# <shared> (core.cloud.vps_scripts splices common.py's blocks here)
from core.cloud.vps_scripts.common import read_env

# </shared>
# isort: split
# <shared:steps>
from core.cloud.vps_scripts.common import StepFailed, run, user_command, write_private

# </shared:steps>

# <constants> (core.cloud.vps_scripts renders them from core.cloud.vps_contract)
INSTALL_ENV = "/etc/rachel-cloud/install.env"
REPO_VAR = "RACHEL8_REPO"
STATE_PATH = "/var/lib/rachel-cloud/releases.json"
LOCK_PATH = "/var/lib/rachel-cloud/update.lock"
LOG_PATH = "/var/log/rachel-cloud-update.log"
USER = "rachel"
HOME = "/home/rachel"
CLONE_DIR = "/home/rachel/rachel8"
RELEASES_DIR = "/home/rachel/releases"
PARTIAL_SUFFIX = ".partial"
BUN_DIR = "/home/rachel/.bun"
BUN_PATH = "/home/rachel/.bun/bin/bun"
PATH_ENV = "/home/rachel/.bun/bin:/usr/local/bin:/usr/bin:/bin"
UNIT = "rachel8.service"
AGENT_UNIT = "rachel-cloud-agent.service"
PROPERTIES = ["ActiveState", "SubState", "NRestarts", "Result", "ExecMainStatus"]
SECRET_MODE = 384
MAX_LOG_TAIL = 2000
# </constants>

_COMMIT = re.compile(r"[0-9a-f]{40}")
#: `.env` values shorter than this are not secrets (`NODE_ENV=production`...).
_MIN_SECRET = 8
EXIT_FAILED = 1
EXIT_USAGE = 2


class Stage:
    """One stage's run: the step it is at, what it printed, its outcome's fields."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.step = "arguments"
        self.out: list[str] = []
        self.commit: str | None = None
        self.previous: str | None = None
        self.service: dict[str, str] | None = None
        self.removed: list[str] = []
        self._owner: tuple[int, int] | None = None

    @property
    def owner(self) -> tuple[int, int]:
        """The Rachel8 user's uid and gid (StepFailed when there is no such user)."""
        if self._owner is None:
            try:
                entry = pwd.getpwnam(USER)
            except KeyError:
                raise StepFailed(1, f"there is no user {USER}") from None
            self._owner = (entry.pw_uid, entry.pw_gid)
        return self._owner

    def as_user(self, *argv: str) -> list[str]:
        return user_command(USER, HOME, PATH_ENV, BUN_DIR, argv)

    def note(self, text: str) -> None:
        self.out.append(text + "\n")


def release_dir(commit: str) -> str:
    return f"{RELEASES_DIR}/{commit}"


def head(directory: str) -> str | None:
    """The commit checked out (detached) in `directory`."""
    try:
        with open(f"{directory}/.git/HEAD", encoding="utf-8") as handle:
            found = handle.read().strip()
    except OSError:
        return None
    return found if _COMMIT.fullmatch(found) else None


def prepared(commit: str) -> bool:
    """Whether the release dir holds `commit` with its dependencies installed."""
    directory = release_dir(commit)
    return head(directory) == commit and os.path.isdir(f"{directory}/node_modules")


def linked() -> str | None:
    """The commit CLONE_DIR links to (None: no link into RELEASES_DIR)."""
    try:
        target = os.readlink(CLONE_DIR)
    except OSError:
        return None
    parent, commit = os.path.split(os.path.join(os.path.dirname(CLONE_DIR), target))
    return commit if parent == RELEASES_DIR and _COMMIT.fullmatch(commit) else None


def point_link(stage: Stage, commit: str) -> None:
    """CLONE_DIR -> releases/COMMIT: a new link renamed over the old one (atomic), the user's."""
    temp = f"{CLONE_DIR}.{os.getpid()}.new"
    if os.path.lexists(temp):
        os.unlink(temp)
    os.symlink(os.path.relpath(release_dir(commit), os.path.dirname(CLONE_DIR)), temp)
    os.lchown(temp, *stage.owner)
    os.rename(temp, CLONE_DIR)
    stage.note(f"{CLONE_DIR} -> {os.readlink(CLONE_DIR)}")


def migrate(stage: Stage) -> None:
    """A VPS installed before releases: its clone moves to its release dir, and is linked."""
    stage.step = "layout"
    if os.path.islink(CLONE_DIR):
        if linked() is None:
            raise StepFailed(1, f"{CLONE_DIR} links to {os.readlink(CLONE_DIR)}, not a release")
        return
    commit = head(CLONE_DIR) if os.path.isdir(CLONE_DIR) else None
    if commit is None:
        raise StepFailed(1, f"{CLONE_DIR} is not a Rachel8 clone with a detached commit")
    if os.path.lexists(release_dir(commit)):
        raise StepFailed(1, f"{CLONE_DIR} and {release_dir(commit)} both exist")
    if not os.path.isdir(RELEASES_DIR):
        os.mkdir(RELEASES_DIR, 0o755)
        os.chown(RELEASES_DIR, *stage.owner)
    os.rename(CLONE_DIR, release_dir(commit))
    stage.note(f"moved {CLONE_DIR} to {release_dir(commit)}")
    point_link(stage, commit)


def copy_env(stage: Stage, source: str, directory: str) -> None:
    """The running release's `.env` into `directory`: 0600, the user's, renamed into place."""
    stage.step = "env"
    try:
        with open(f"{release_dir(source)}/.env", "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise StepFailed(1, f"cannot read the running release's .env: {exc.strerror}") from None
    temp = f"{directory}/.env.{os.getpid()}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    try:
        os.fchown(fd, *stage.owner)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, f"{directory}/.env")
    stage.note(f"copied .env of {source} into {directory}")


def remove_tree(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def prepare(stage: Stage, commit: str) -> None:
    migrate(stage)
    current = stage.previous = linked()
    if prepared(commit) or commit == current:
        stage.note(f"{release_dir(commit)} is prepared already")
        return
    if current is None:
        raise StepFailed(1, f"{CLONE_DIR} links to no release")
    repo = read_env(INSTALL_ENV).get(REPO_VAR, "")
    partial = release_dir(commit) + PARTIAL_SUFFIX
    stage.step = "clone"
    if not repo:
        raise StepFailed(1, f"{REPO_VAR} is not set in {INSTALL_ENV}")
    remove_tree(partial)
    remove_tree(release_dir(commit))  # half there (no node_modules): made again
    # The running release's objects are borrowed, then copied (--dissociate): fast, independent.
    clone = ["git", "clone", "--quiet", "--reference-if-able", release_dir(current)]
    run(stage.as_user(*clone, "--dissociate", "--", repo, partial), stage.out)
    git = ["git", "-C", partial, "-c", "advice.detachedHead=false"]
    run(stage.as_user(*git, "checkout", "--quiet", "--detach", commit), stage.out)
    found = run(stage.as_user(*git, "rev-parse", "HEAD"), stage.out)
    if found != commit:
        raise StepFailed(1, f"HEAD is {found}, expected {commit}")
    stage.step = "dependencies"
    run(stage.as_user(BUN_PATH, "install", "--frozen-lockfile"), stage.out, cwd=partial)
    copy_env(stage, current, partial)
    stage.step = "clone"
    os.rename(partial, release_dir(commit))
    os.utime(release_dir(commit))  # prune keeps the newest by this time
    stage.note(f"prepared {release_dir(commit)}")


def read_state() -> dict[str, str | None]:
    try:
        with open(STATE_PATH, encoding="utf-8") as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(v, str) and _COMMIT.fullmatch(v)}


def show(stage: Stage) -> None:
    argv = ["systemctl", "show", UNIT, *(f"--property={p}" for p in PROPERTIES)]
    shown = run(argv, stage.out)
    found = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    stage.service = {p: found.get(p, "") for p in PROPERTIES}


def switch(stage: Stage, commit: str) -> None:
    migrate(stage)
    current = stage.previous = linked()
    stage.step = "release"
    if not prepared(commit):
        raise StepFailed(1, f"{release_dir(commit)} is not prepared (prepare {commit} first)")
    state = read_state()
    if commit != current:
        if current is not None:
            copy_env(stage, current, release_dir(commit))  # the .env of now, not of then
        stage.step = "link"
        point_link(stage, commit)
        state = {"current": commit, "previous": current}
    elif state.get("current") != commit:
        state = {"current": commit, "previous": None}
    write_private(STATE_PATH, json.dumps(state) + "\n", 0o644)
    stage.step = "restart"
    active = run(["systemctl", "show", UNIT, "--property=ActiveState", "--value"], stage.out)
    if commit != current or active != "active":
        # A unit that crash-looped has used up its start limit, which counts restarts too.
        run(["systemctl", "reset-failed", UNIT], stage.out)
        run(["systemctl", "restart", UNIT], stage.out)
    try:
        # A heartbeat now tells of the release, not at the timer's next tick.
        run(["systemctl", "start", "--no-block", AGENT_UNIT], stage.out)
    except StepFailed:
        stage.note(f"{AGENT_UNIT} did not start; the timer sends the next heartbeat")
    show(stage)


def prune(stage: Stage, keep: int) -> None:
    stage.step = "prune"
    state = read_state()
    current = stage.commit = linked()
    stage.previous = state.get("previous") if state.get("current") == current else None
    kept = {c for c in (current, stage.previous) if c}
    others: list[tuple[float, str]] = []
    for name in sorted(os.listdir(RELEASES_DIR)) if os.path.isdir(RELEASES_DIR) else []:
        path = f"{RELEASES_DIR}/{name}"
        if name.endswith(PARTIAL_SUFFIX) and _COMMIT.fullmatch(name[: -len(PARTIAL_SUFFIX)]):
            remove_tree(path)  # a prepare that never finished (the lock says none runs)
            stage.note(f"removed {path}")
        elif _COMMIT.fullmatch(name) and name not in kept and not os.path.islink(path):
            others.append((os.stat(path).st_mtime, name))
    others.sort(reverse=True)
    for _, name in others[max(0, keep - len(kept)) :]:
        remove_tree(release_dir(name))
        stage.removed.append(name)
        stage.note(f"removed {release_dir(name)}")


def secrets() -> list[str]:
    """The running release's `.env` values long enough to be secrets."""
    values = read_env(f"{CLONE_DIR}/.env").values()
    return sorted((v for v in values if len(v) >= _MIN_SECRET), key=len, reverse=True)


def masked(text: str) -> str:
    for value in secrets():
        text = text.replace(value, "[redacted]")
    return text


def outcome(stage: Stage, failed: StepFailed | None, crashed: bool) -> dict[str, object]:
    bad = failed is not None or crashed
    return {
        "ok": not bad,
        "stage": stage.name,
        "commit": stage.commit,
        "previous": stage.previous,
        "failed_step": stage.step if bad else None,
        "exit_status": failed.status if failed is not None else None,
        "log_tail": masked("".join(stage.out))[-MAX_LOG_TAIL:],
        "service": stage.service,
        "removed": stage.removed,
    }


def execute(stage: Stage, arg: str) -> tuple[StepFailed | None, bool]:
    """Run the stage under the lock; (the failed step's error, whether it crashed)."""
    if stage.name in ("prepare", "switch"):
        if not _COMMIT.fullmatch(arg):
            return StepFailed(EXIT_USAGE, f"not a full commit id: {arg[:60]!r}"), False
        stage.commit = arg
    elif not arg.isdigit():
        return StepFailed(EXIT_USAGE, f"not a number of releases to keep: {arg[:20]!r}"), False
    stage.step = "lock"
    os.makedirs(os.path.dirname(LOCK_PATH), 0o700, exist_ok=True)
    with open(LOCK_PATH, "a", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return StepFailed(EXIT_FAILED, "another update stage is running"), False
        try:
            if stage.name == "prepare":
                prepare(stage, arg)
            elif stage.name == "switch":
                switch(stage, arg)
            else:
                prune(stage, int(arg))
        except StepFailed as exc:
            return exc, False
        except Exception:  # an unforeseen error is the step's failure, reported
            stage.out.append(traceback.format_exc())
            return None, True
    return None, False


def main(argv: list[str]) -> int:
    """One stage; its outcome as one JSON line on stdout."""
    name = argv[1] if len(argv) > 1 and argv[1] in ("prepare", "switch", "prune") else ""
    stage = Stage(name)
    failed: StepFailed | None = StepFailed(EXIT_USAGE, "usage: prepare|switch COMMIT, prune KEEP")
    crashed = False
    if name and len(argv) == 3:
        failed, crashed = execute(stage, argv[2])
    if failed is not None:
        stage.note(f"step {stage.step} failed: {failed.reason}")
    result = outcome(stage, failed, crashed)
    try:
        with open(os.open(LOG_PATH, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") as log:
            log.write(f"== {time.ctime()}: {' '.join(argv[1:3])[:100]}\n")
            log.write(masked("".join(stage.out)))
    except OSError:
        pass  # the outcome still reaches the control plane
    print(json.dumps(result))
    if result["ok"]:
        return 0
    return EXIT_USAGE if stage.step == "arguments" else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
