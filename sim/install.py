"""The Rachel8 install a simulated VPS performs when its runcmd runs the install script.

What the real script does (`core.cloud.vps_contract`: `INSTALL_STEPS` in
order, stopping at the first failure) is emulated step by step, checking the
contract as a real Ubuntu box would: the packages, the unprivileged user,
Bun and Claude Code at versions that exist, the clone of the Rachel8
repository at a commit that exists (`sim.rachel8`), `bun install`, the
shared folder and the unit. The outcome is written to `INSTALL_RESULT_PATH`
in the contract's format, which the bootstrap then reports.

Like the real script, running it again is harmless: packages already there
stay, Bun and Claude Code are installed over themselves, a release dir that
holds a clone already is fetched and checked out instead of cloned. What it
costs is its work: `pending_work` is the share of the stock install's time
(`RACHEL_SIM_INSTALL_TIME`: apt, Bun, Claude Code, the clone, `bun install`)
whose result is not on the disk yet. On a server made from a snapshot of an
installed server, that is nothing.

With the script's `verify` argument (a server made from a snapshot image,
`core.cloud.vps_contract`, "From a snapshot image") each step only checks
its result on the disk, as the real script does, and the outcome is written
afresh; it costs no install time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.cloud import vps_contract as contract
from sim import rachel8, releases
from sim.accounts import Account
from sim.releases import StepFailed
from sim.rootfs import RootFs
from sim.systemd import Systemd

log = logging.getLogger(__name__)

BUN_RELEASES = "https://github.com/oven-sh/bun/releases/download"
#: Where the output of every step goes, as the script's `tee` would leave it.
INSTALL_LOG_PATH = "/var/log/rachel-cloud-install.log"


#: What each step prints when a fault makes it fail (exit status, output):
#: the classic ways each one fails on a real box.
FAULT_OUTPUT: dict[str, tuple[int, str]] = {
    contract.STEP_PACKAGES: (
        100,
        "E: Failed to fetch http://archive.ubuntu.com/ubuntu/pool/main/f/ffmpeg/"
        "ffmpeg_6.1.1-3ubuntu5_amd64.deb  Temporary failure resolving 'archive.ubuntu.com'\n"
        "E: Unable to fetch some archives, maybe run apt-get update or try with --fix-missing?\n",
    ),
    contract.STEP_USER: (1, "useradd: cannot lock /etc/passwd; try again later.\n"),
    contract.STEP_BUN: (
        1,
        "curl: (6) Could not resolve host: github.com\n"
        'error: Failed to download bun from "https://github.com/oven-sh/bun/releases"\n',
    ),
    contract.STEP_CLAUDE_CODE: (
        1,
        "error: GET https://registry.npmjs.org/@anthropic-ai%2fclaude-code - 503\n",
    ),
    contract.STEP_CLONE: (
        128,
        "fatal: unable to access 'https://github.com/polly3223/Rachel8.git/': "
        "Could not resolve host: github.com\n",
    ),
    contract.STEP_DEPENDENCIES: (
        1,
        "error: lockfile had changes, but lockfile is frozen\n"
        "note: try re-running without --frozen-lockfile and commit the updated lockfile\n",
    ),
    contract.STEP_SHARED_FOLDER: (1, "mkdir: cannot create directory: No space left on device\n"),
    contract.STEP_UNIT: (1, "Failed to enable unit: Access denied\n"),
}


#: The shares of the stock install's time the steps take when they have work
#: to do: apt most of it, then `bun install` of Rachel8's dependencies.
STEP_WORK: dict[str, float] = {
    contract.STEP_PACKAGES: 0.4,
    contract.STEP_BUN: 0.1,
    contract.STEP_CLAUDE_CODE: 0.15,
    contract.STEP_CLONE: 0.1,
    contract.STEP_DEPENDENCIES: 0.25,
}


def _file_text(fs: RootFs, path: str) -> str:
    real = fs.real(path, "/")
    return real.read_text(errors="replace") if real.is_file() else ""


def _done_steps(fs: RootFs, manifest: Mapping[str, str], packages: list[str]) -> set[str]:
    """The steps whose result is on the disk already, for what `manifest` asks."""
    layout = contract.Layout(manifest.get(contract.USER_VAR, "").strip() or "rachel")
    commit = manifest.get(contract.COMMIT_VAR, "").strip()
    bun = manifest.get(contract.BUN_VERSION_VAR, "").strip()
    claude = manifest.get(contract.CLAUDE_CODE_VERSION_VAR, "").strip()
    release = layout.release_dir(commit) if commit else None
    claude_manifest = (
        f"{layout.home}/.bun/install/global/node_modules/@anthropic-ai/claude-code/package.json"
    )
    checks = {
        contract.STEP_PACKAGES: all(p in packages for p in contract.PACKAGES),
        contract.STEP_BUN: bool(bun) and f"# bun {bun}\n" in _file_text(fs, layout.bun_path),
        contract.STEP_CLAUDE_CODE: bool(claude)
        and f'"version": "{claude}"' in _file_text(fs, claude_manifest),
        contract.STEP_CLONE: release is not None
        and _file_text(fs, f"{release}/.git/HEAD").strip() == commit,
        contract.STEP_DEPENDENCIES: release is not None
        and fs.real(f"{release}/node_modules", "/").is_dir(),
    }
    return {step for step, done in checks.items() if done}


def pending_work(
    fs: RootFs, manifest: Mapping[str, str], packages: list[str], fail_step: str | None
) -> float:
    """The share (0 to 1) of the stock install's time a run of the install now takes.

    The steps up to the one a fault fails at (later ones never run) whose
    result is not on the disk yet.
    """
    done = _done_steps(fs, manifest, packages)
    work = 0.0
    for step in contract.INSTALL_STEPS:
        if step == fail_step:
            break
        if step not in done:
            work += STEP_WORK.get(step, 0.0)
    return round(work, 6)


@dataclass
class InstallRun:
    """One run of the install script.

    Attributes:
        manifest: the install manifest's values.
        fail_step: a fault makes this step fail.
        packages: packages installed so far (the box's dpkg database).
        log: everything the steps printed.
    """

    fs: RootFs
    systemd: Systemd
    manifest: Mapping[str, str]
    fail_step: str | None = None
    packages: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    versions: dict[str, str | None] = field(
        default_factory=lambda: {"bun": None, "claude_code": None}
    )
    commit: str | None = None
    #: Check each step's result instead of doing the step (`INSTALL_VERIFY_ARG`).
    verify: bool = False

    def _value(self, name: str) -> str:
        value = self.manifest.get(name, "").strip()
        if not value:
            raise StepFailed(
                1, f"rachel-cloud-install: {name} is not set in {contract.INSTALL_ENV_PATH}\n"
            )
        return value

    def _user(self) -> Account:
        name = self._value(contract.USER_VAR)
        account = self.fs.accounts.get(name)
        if account is None:
            raise StepFailed(1, f"id: '{name}': no such user\n")
        return account

    def _owned(self, account: Account) -> tuple[int, int]:
        return account.uid, account.gid

    def _program(self, account: Account, name: str, what: str) -> None:
        """An executable in Bun's bin directory, the user's (what the installers leave)."""
        bin_dir = contract.Layout(account.name).bin_dir
        self.fs.makedirs(bin_dir, 0o755, self._owned(account))
        text = f"#!/bin/sh\n# {what}\n".encode()
        self.fs.write(f"{bin_dir}/{name}", text, 0o755, owner=self._owned(account))

    # -- the steps, in INSTALL_STEPS order ---------------------------------

    def packages_step(self) -> str:
        wanted = [p for p in contract.PACKAGES if p not in self.packages]
        self.packages.extend(wanted)
        lines = [f"Setting up {name} ..." for name in wanted]
        return (
            "\n".join(["Reading package lists...", *lines, "Processing triggers for man-db ..."])
            + "\n"
        )

    def user_step(self) -> str:
        account = self._user()
        if account.has_sudo:
            why = account.sudo_rule or ", ".join(account.groups) or "uid 0"
            raise StepFailed(
                1,
                f"rachel-cloud-install: {account.name} can use sudo ({why}); "
                "Rachel8 must run as an unprivileged user\n",
            )
        if not self.fs.real(account.home, "/").is_dir():
            raise StepFailed(1, f"rachel-cloud-install: {account.home} does not exist\n")
        return f"uid={account.uid}({account.name}) gid={account.gid}({account.name})\n"

    def bun_step(self) -> str:
        account = self._user()
        version = self._value(contract.BUN_VERSION_VAR)
        if version not in rachel8.BUN_VERSIONS:
            raise StepFailed(
                1,
                "curl: (22) The requested URL returned error: 404\n"
                "error: Failed to download bun from "
                f'"{BUN_RELEASES}/bun-v{version}/bun-linux-x64.zip"\n',
            )
        self._program(account, "bun", f"bun {version}")
        self.versions["bun"] = version
        return (
            "######## 100.0%\nbun was installed successfully to ~/.bun/bin/bun\n"
            f"bun --version: {version}\n"
        )

    def claude_code_step(self) -> str:
        account = self._user()
        version = self._value(contract.CLAUDE_CODE_VERSION_VAR)
        if not self.fs.real(f"{account.home}/.bun/bin/bun", "/").is_file():
            raise StepFailed(127, "sh: 1: bun: not found\n")
        if version not in rachel8.CLAUDE_CODE_VERSIONS:
            raise StepFailed(
                1,
                f'error: No version matching "{version}" found for specifier '
                '"@anthropic-ai/claude-code" (but package exists)\n',
            )
        owner = self._owned(account)
        package_dir = f"{account.home}/.bun/install/global/node_modules/@anthropic-ai/claude-code"
        self.fs.makedirs(package_dir, 0o755, owner)
        manifest = json.dumps({"name": "@anthropic-ai/claude-code", "version": version})
        self.fs.write(f"{package_dir}/package.json", manifest.encode(), 0o644, owner=owner)
        self._program(account, "claude", f"Claude Code {version}")
        self.versions["claude_code"] = version
        return (
            f"bun add v{self.versions['bun']}\n\n"
            f"installed @anthropic-ai/claude-code@{version} with binaries:\n - claude\n"
        )

    def clone_step(self) -> str:
        account = self._user()
        layout = contract.Layout(account.name)
        commit = self._value(contract.COMMIT_VAR)
        release = layout.release_dir(commit)
        if self.fs.real(f"{release}/.git", "/").is_dir():
            # Installed already (a snapshot's disk): the script fetches and checks out.
            output = releases.checkout(self.fs, release, commit, self._owned(account))
        else:
            output = releases.clone(
                self.fs, release, self._value(contract.REPO_VAR), commit, self._owned(account)
            )
        releases.point_link(self.fs, layout, commit, self._owned(account))
        self.commit = commit
        return output

    def dependencies_step(self) -> str:
        account = self._user()
        layout = contract.Layout(account.name)
        return releases.bun_install(
            self.fs, layout.clone_dir, self._owned(account), self.versions["bun"]
        )

    def shared_folder_step(self) -> str:
        account = self._user()
        shared = contract.Layout(account.name).shared_dir
        self.fs.makedirs(shared, contract.PRIVATE_DIR_MODE, self._owned(account))
        return f"install: creating directory '{shared}'\n"

    def unit_step(self) -> str:
        enabled = self.systemd.systemctl(["enable", contract.SERVICE_UNIT])
        if enabled.exit_status:
            raise StepFailed(enabled.exit_status, enabled.stdout + enabled.stderr)
        return enabled.stdout + enabled.stderr

    # -- verify: the checks of the steps' results --------------------------------

    def packages_check(self) -> str:
        missing = [p for p in contract.PACKAGES if p not in self.packages]
        if missing:
            raise StepFailed(1, f"dpkg-query: no packages found matching {missing[0]}\n")
        return "".join(f"install ok installed {p}\n" for p in contract.PACKAGES)

    def bun_check(self) -> str:
        account = self._user()
        wanted = self._value(contract.BUN_VERSION_VAR)
        text = _file_text(self.fs, contract.Layout(account.name).bun_path)
        if not text:
            raise StepFailed(127, "sh: 1: bun: not found\n")
        found = text.rsplit("# bun ", 1)[-1].strip()
        self.versions["bun"] = found
        if found != wanted:
            raise StepFailed(1, f"bun reports {found!r}, expected {wanted}\n")
        return f"{found}\n"

    def claude_code_check(self) -> str:
        account = self._user()
        wanted = self._value(contract.CLAUDE_CODE_VERSION_VAR)
        text = _file_text(self.fs, contract.Layout(account.name).claude_path)
        if not text:
            raise StepFailed(127, "sh: 1: claude: not found\n")
        found = text.rsplit("# Claude Code ", 1)[-1].strip()
        self.versions["claude_code"] = found
        if found != wanted:
            raise StepFailed(1, f"claude reports {found!r}, expected {wanted}\n")
        return f"{found} (Claude Code)\n"

    def clone_check(self) -> str:
        layout = contract.Layout(self._user().name)
        wanted = self._value(contract.COMMIT_VAR)
        head = _file_text(self.fs, layout.git_head_path).strip() or None
        self.commit = head
        if releases.linked_commit(self.fs, layout) != wanted:
            raise StepFailed(
                1, f"{layout.clone_dir} does not link to {layout.release_dir(wanted)}\n"
            )
        if head != wanted:
            raise StepFailed(1, f"HEAD is {head}, expected {wanted}\n")
        return f"{head}\n"

    def dependencies_check(self) -> str:
        layout = contract.Layout(self._user().name)
        if not self.fs.real(f"{layout.clone_dir}/node_modules", "/").is_dir():
            raise StepFailed(1, f"{layout.clone_dir}/node_modules is missing\n")
        return ""

    def shared_folder_check(self) -> str:
        shared = contract.Layout(self._user().name).shared_dir
        if not self.fs.real(shared, "/").is_dir():
            raise StepFailed(1, f"{shared} is missing\n")
        return ""

    def unit_check(self) -> str:
        enabled = self.systemd.systemctl(["is-enabled", contract.SERVICE_UNIT])
        if enabled.exit_status:
            raise StepFailed(enabled.exit_status, enabled.stdout + enabled.stderr)
        return enabled.stdout

    # -- the run -------------------------------------------------------------

    def run(self, cloud_init_errors: list[str]) -> dict[str, Any]:
        """Run every step in order and write the result; returns it."""
        steps: dict[str, Callable[[], str]] = {
            contract.STEP_PACKAGES: self.packages_step,
            contract.STEP_USER: self.user_step,
            contract.STEP_BUN: self.bun_step,
            contract.STEP_CLAUDE_CODE: self.claude_code_step,
            contract.STEP_CLONE: self.clone_step,
            contract.STEP_DEPENDENCIES: self.dependencies_step,
            contract.STEP_SHARED_FOLDER: self.shared_folder_step,
            contract.STEP_UNIT: self.unit_step,
        }
        if self.verify:
            steps = {
                contract.STEP_PACKAGES: self.packages_check,
                contract.STEP_USER: self.user_step,
                contract.STEP_BUN: self.bun_check,
                contract.STEP_CLAUDE_CODE: self.claude_code_check,
                contract.STEP_CLONE: self.clone_check,
                contract.STEP_DEPENDENCIES: self.dependencies_check,
                contract.STEP_SHARED_FOLDER: self.shared_folder_check,
                contract.STEP_UNIT: self.unit_check,
            }
        failed: str | None = None
        exit_status: int | None = None
        for name in contract.INSTALL_STEPS:
            self.log.append(f"==> {name}\n")
            try:
                if name == self.fail_step:
                    raise StepFailed(*FAULT_OUTPUT[name])
                self.log.append(steps[name]())
            except StepFailed as exc:
                self.log.append(exc.output)
                self.log.append(
                    f"rachel-cloud-install: step {name} failed (exit {exc.exit_status})\n"
                )
                failed, exit_status = name, exc.exit_status
                break
        return self._finish(failed, exit_status, cloud_init_errors)

    def _finish(
        self, failed: str | None, exit_status: int | None, errors: list[str]
    ) -> dict[str, Any]:
        text = "".join(self.log)
        result: dict[str, Any] = {
            "ok": failed is None,
            "failed_step": failed,
            "exit_status": exit_status,
            "log_tail": text[-contract.MAX_LOG_TAIL :],
            # The script runs inside cloud-init's runcmd: cloud-init is still running.
            "cloud_init": {
                "status": "running",
                "errors": list(errors[: contract.MAX_CLOUD_INIT_ERRORS]),
            },
            "commit": self.commit,
            "versions": dict(self.versions),
        }
        self.fs.write(INSTALL_LOG_PATH, text.encode(), 0o640)
        self.fs.write(contract.INSTALL_RESULT_PATH, (json.dumps(result) + "\n").encode(), 0o644)
        return result
