"""Rachel8 releases on a simulated VPS's disk: a clone, `bun install`, the running link.

What `git clone` + `git checkout --detach`, `bun install --frozen-lockfile`
and `ln -sfn` leave behind, written once for the install (`sim.install`)
and the update (`sim.update`): a clone holds the release's files
(`sim.rachel8.Release.files`), `.git/HEAD` (the commit) and `.git/config`
(the origin); `bun install` refuses a lockfile that does not list
package.json's dependencies, as Bun's frozen lockfile does; the link
`Layout.clone_dir` is relative (`Layout.link_target`), the user's.
Failures raise `StepFailed` with the exit status and words of the real tool.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from core.cloud import vps_contract as contract
from sim import rachel8
from sim.owners import Owner
from sim.rootfs import RootFs


class StepFailed(Exception):
    """A step exited non-zero; `output` is what it printed."""

    def __init__(self, exit_status: int, output: str) -> None:
        super().__init__(output)
        self.exit_status = exit_status
        self.output = output


def release_of(fs: RootFs, directory: str) -> rachel8.Release | None:
    """The catalogue's release checked out in `directory` (its `.git/HEAD`), if any."""
    head = fs.real(f"{directory}/.git/HEAD", "/")
    commit = head.read_text(errors="replace").strip() if head.is_file() else ""
    return rachel8.RELEASES.get(commit)


def clone(fs: RootFs, directory: str, repo: str, commit: str, owner: Owner) -> str:
    """`git clone REPO DIRECTORY && git -C DIRECTORY checkout --detach COMMIT`; the output.

    Raises:
        StepFailed: an unknown repository or commit, or a non-empty `directory`.
    """
    cloning = f"Cloning into '{directory}'...\n"
    if not rachel8.known_repository(repo):
        raise StepFailed(
            128, f"{cloning}remote: Repository not found.\nfatal: repository '{repo}' not found\n"
        )
    real = fs.real(directory, "/")
    if real.exists() and (not real.is_dir() or any(real.iterdir())):
        raise StepFailed(
            128,
            f"fatal: destination path '{directory}' already exists "
            "and is not an empty directory.\n",
        )
    release = rachel8.RELEASES.get(commit)
    if release is None:
        # The clone succeeded; the checkout of a commit the repository lacks did not.
        remove(fs, directory)
        raise StepFailed(128, f"{cloning}fatal: reference is not a tree: {commit}\n")
    fs.makedirs(f"{directory}/.git", 0o755, owner)
    for path, text in release.files().items():
        fs.makedirs(f"{directory}/{path}".rsplit("/", 1)[0], 0o755, owner)
        fs.write(f"{directory}/{path}", text.encode(), 0o644, owner=owner)
    fs.write(f"{directory}/.git/HEAD", f"{commit}\n".encode(), 0o644, owner=owner)
    config = f'[remote "origin"]\n\turl = {repo}\n'.encode()
    fs.write(f"{directory}/.git/config", config, 0o644, owner=owner)
    return f"{cloning}HEAD is now at {commit[:7]} {release.subject}\n"


def checkout(fs: RootFs, directory: str, commit: str, owner: Owner) -> str:
    """`git -C DIRECTORY fetch origin && git checkout --detach COMMIT` in an existing clone.

    Raises:
        StepFailed: the repository has no such commit.
    """
    release = rachel8.RELEASES.get(commit)
    if release is None:
        raise StepFailed(128, f"fatal: reference is not a tree: {commit}\n")
    fs.write(f"{directory}/.git/HEAD", f"{commit}\n".encode(), 0o644, owner=owner)
    return f"HEAD is now at {commit[:7]} {release.subject}\n"


def bun_install(fs: RootFs, directory: str, owner: Owner, bun_version: str | None) -> str:
    """`bun install --frozen-lockfile` in `directory`; the output.

    Raises:
        StepFailed: no lockfile, or one that does not list package.json's dependencies.
    """
    lock = fs.real(f"{directory}/bun.lock", "/")
    if not lock.is_file():
        raise StepFailed(1, "error: lockfile not found; --frozen-lockfile needs one\n")
    wanted: dict[str, str] = (
        _json(fs.real(f"{directory}/package.json", "/")).get("dependencies") or {}
    )
    locked = (_json(lock).get("workspaces") or {}).get("", {}).get("dependencies") or {}
    if wanted != locked:
        raise StepFailed(
            1,
            f"bun install v{bun_version}\n"
            "error: lockfile had changes, but lockfile is frozen\n"
            "note: try re-running without --frozen-lockfile and commit the updated lockfile\n",
        )
    lines = [f"bun install v{bun_version}", ""]
    for name, version in wanted.items():
        package_dir = f"{directory}/node_modules/{name}"
        fs.makedirs(package_dir, 0o755, owner)
        text = json.dumps({"name": name, "version": version}).encode()
        fs.write(f"{package_dir}/package.json", text, 0o644, owner=owner)
        lines.append(f"+ {name}@{version}")
    lines += ["", f"{len(wanted)} packages installed"]
    return "\n".join(lines) + "\n"


def _json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(errors="replace"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def point_link(fs: RootFs, layout: contract.Layout, commit: str, owner: Owner) -> None:
    """`ln -s releases/COMMIT` to a temp name, renamed over `clone_dir`: atomic, the user's."""
    temp = f"{layout.clone_dir}.new"
    remove(fs, temp)
    os.symlink(layout.link_target(commit), fs.real(temp, "/"))
    fs.owners.set(temp, *owner)
    fs.real(temp, "/").replace(fs.real(layout.clone_dir, "/"))
    fs.owners.move(temp, layout.clone_dir)


def linked_commit(fs: RootFs, layout: contract.Layout) -> str | None:
    """The commit `clone_dir` links to (None: no link, or a link elsewhere)."""
    real = fs.real(layout.clone_dir, "/")
    if not real.is_symlink():
        return None
    target = os.readlink(real)
    prefix = layout.link_target("")
    commit = target.removeprefix(prefix)
    return commit if target.startswith(prefix) and len(commit) == 40 else None


def remove(fs: RootFs, path: str) -> None:
    """`rm -rf PATH` (a link itself, not what it points to)."""
    real = fs.real(path, "/")
    if real.is_symlink() or real.is_file():
        real.unlink()
    elif real.is_dir():
        shutil.rmtree(real)
    fs.owners.drop(path)
