#!/usr/bin/python3
"""rachel-cloud install: Rachel8 as its own setup installs it, one named step at a time.

Run once by cloud-init, as root, before the bootstrap. It reads what to install
from the manifest (INSTALL_ENV), runs STEPS in order, stops at the first that
fails, and writes the outcome (JSON) to RESULT for the bootstrap to report.
With the argument VERIFY (a server made from a snapshot image, whose disk holds
the install already) each step only checks that its result is there, for the
manifest's commit and versions, and the outcome is written afresh: the image's
own RESULT is its builder's, not this server's.
The full output of every step is kept in LOG_PATH (0600) for an operator.
Python 3 is on every cloud-init image (cloud-init is Python); the standard
library only.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Callable

# <shared> (core.cloud.vps_scripts splices common.py's blocks here)
from core.cloud.vps_scripts.common import read_env

# </shared>
# isort: split
# <shared:steps>
from core.cloud.vps_scripts.common import StepFailed, run, user_command, write_private

# </shared:steps>

# <constants> (core.cloud.vps_scripts renders them from core.cloud.vps_contract)
INSTALL_ENV = "/etc/rachel-cloud/install.env"
BOOTSTRAP_ENV = "/etc/rachel-cloud/bootstrap.env"
RESULT = "/var/lib/rachel-cloud/install.json"
LOG_PATH = "/var/log/rachel-cloud-install.log"
TOKEN_VAR = "RACHEL_CALLBACK_TOKEN"  # noqa: S105 - a variable name
REPO_VAR = "RACHEL8_REPO"
COMMIT_VAR = "RACHEL8_COMMIT"
BUN_VERSION_VAR = "BUN_VERSION"
CLAUDE_CODE_VERSION_VAR = "CLAUDE_CODE_VERSION"
USER_VAR = "RACHEL_USER"
STEPS = ["packages", "user", "bun", "claude_code", "clone", "dependencies", "shared_folder", "unit"]
PACKAGES = ["git", "curl", "unzip", "ca-certificates", "ffmpeg", "build-essential", "cmake"]
UNIT = "rachel8.service"
UNIT_PATH = "/etc/systemd/system/rachel8.service"
HOME = "/home/rachel"
CLONE_DIR = "/home/rachel/rachel8"
RELEASES_DIR = "/home/rachel/releases"
SHARED_DIR = "/home/rachel/shared"
BUN_DIR = "/home/rachel/.bun"
BUN_PATH = "/home/rachel/.bun/bin/bun"
CLAUDE_PATH = "/home/rachel/.bun/bin/claude"
PATH_ENV = "/home/rachel/.bun/bin:/usr/local/bin:/usr/bin:/bin"
BUN_INSTALLER_URL = "https://bun.sh/install"
CLAUDE_CODE_PACKAGE = "@anthropic-ai/claude-code"
MAX_LOG_TAIL = 2000
MAX_CLOUD_INIT_ERRORS = 5
VERIFY = "verify"
# </constants>

APT_ATTEMPTS = 3
APT_RETRY_SECONDS = 15
MAX_ERROR_LENGTH = 500
_COMMIT = re.compile(r"[0-9a-f]{40}")


class Install:
    """The steps, for the user and versions of the manifest; `versions` as found."""

    def __init__(self, manifest: dict[str, str]) -> None:
        self.user = manifest.get(USER_VAR, "")
        self.repo = manifest.get(REPO_VAR, "")
        self.commit = manifest.get(COMMIT_VAR, "")
        self.bun_version = manifest.get(BUN_VERSION_VAR, "")
        self.claude_code_version = manifest.get(CLAUDE_CODE_VERSION_VAR, "")
        self.versions: dict[str, str | None] = {"bun": None, "claude_code": None}
        self.steps: dict[str, Callable[[list[str]], None]] = {
            "packages": self.packages,
            "user": self.check_user,
            "bun": self.bun,
            "claude_code": self.claude_code,
            "clone": self.clone,
            "dependencies": self.dependencies,
            "shared_folder": self.shared_folder,
            "unit": self.unit,
        }

    def as_user(self, *argv: str) -> list[str]:
        """`argv` run as the Rachel8 user, in a clean environment where `bun` resolves."""
        return user_command(self.user, HOME, PATH_ENV, BUN_DIR, argv)

    def packages(self, out: list[str]) -> None:
        # DPkg::Lock::Timeout waits for a concurrent apt (unattended-upgrades at
        # first boot); the retries ride out a mirror that failed for a moment.
        apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-o", "Acquire::Retries=3"]
        for attempt in range(1, APT_ATTEMPTS + 1):
            try:
                run([*apt, "update"], out)
                run([*apt, "install", "-y", "--no-install-recommends", *PACKAGES], out)
                return
            except StepFailed:
                if attempt == APT_ATTEMPTS:
                    raise
                out.append(f"apt attempt {attempt} failed; again in {APT_RETRY_SECONDS}s\n")
                time.sleep(APT_RETRY_SECONDS)

    def check_user(self, out: list[str]) -> None:
        try:
            entry = pwd.getpwnam(self.user)
        except KeyError:
            raise StepFailed(1, f"user {self.user!r} does not exist") from None
        if entry.pw_uid == 0 or entry.pw_dir != HOME:
            raise StepFailed(1, f"user {self.user!r} is uid {entry.pw_uid}, home {entry.pw_dir}")
        groups = {g.gr_name for g in grp.getgrall() if self.user in g.gr_mem}
        groups.add(grp.getgrgid(entry.pw_gid).gr_name)
        privileged = sorted(groups & {"sudo", "admin", "wheel", "root"})
        if privileged:
            raise StepFailed(1, f"user {self.user!r} is in {', '.join(privileged)}")
        if not os.path.isdir(HOME) or os.stat(HOME).st_uid != entry.pw_uid:
            raise StepFailed(1, f"{HOME} is missing or not owned by {self.user}")
        out.append(f"user {self.user}: uid {entry.pw_uid}, groups {', '.join(sorted(groups))}\n")

    def bun(self, out: list[str]) -> None:
        handle, installer = tempfile.mkstemp(prefix="bun-install-", suffix=".sh")
        os.close(handle)
        try:
            run(["curl", "-fsSL", "--retry", "5", "-o", installer, BUN_INSTALLER_URL], out)
            os.chmod(installer, 0o644)  # the user runs it
            run(self.as_user("bash", installer, f"bun-v{self.bun_version}"), out)
        finally:
            os.unlink(installer)
        self.bun_version_found(out)

    def claude_code(self, out: list[str]) -> None:
        package = f"{CLAUDE_CODE_PACKAGE}@{self.claude_code_version}"
        run(self.as_user(BUN_PATH, "add", "-g", package), out)
        self.claude_code_version_found(out)

    def clone(self, out: list[str]) -> None:
        # Into the commit's release dir; CLONE_DIR links to it (vps_contract, "Releases").
        release = f"{RELEASES_DIR}/{self.commit}"
        if os.path.isdir(os.path.join(release, ".git")):
            run(self.as_user("git", "-C", release, "fetch", "--quiet", "origin"), out)
        else:
            run(self.as_user("git", "clone", "--quiet", "--", self.repo, release), out)
        git = ["git", "-C", release, "-c", "advice.detachedHead=false"]
        run(self.as_user(*git, "checkout", "--quiet", "--detach", self.commit), out)
        head = run(self.as_user(*git, "rev-parse", "HEAD"), out)
        if head != self.commit:
            raise StepFailed(1, f"HEAD is {head}, expected {self.commit}")
        link = os.path.relpath(release, os.path.dirname(CLONE_DIR))
        run(self.as_user("ln", "-sfn", link, CLONE_DIR), out)

    def dependencies(self, out: list[str]) -> None:
        run(self.as_user(BUN_PATH, "install", "--frozen-lockfile"), out, cwd=CLONE_DIR)

    def shared_folder(self, out: list[str]) -> None:
        run(["mkdir", "-p", SHARED_DIR], out)
        run(["chown", f"{self.user}:{self.user}", SHARED_DIR], out)
        run(["chmod", "0700", SHARED_DIR], out)

    def unit(self, out: list[str]) -> None:
        if not os.path.isfile(UNIT_PATH):
            raise StepFailed(1, f"{UNIT_PATH} is missing")
        run(["systemctl", "daemon-reload"], out)
        # Enabled, not started: Rachel8 has no .env until the control plane injects it.
        run(["systemctl", "enable", UNIT], out)

    def bun_version_found(self, out: list[str]) -> None:
        found = run(self.as_user(BUN_PATH, "--version"), out)
        self.versions["bun"] = found[:64]
        if found != self.bun_version:
            raise StepFailed(1, f"bun reports {found!r}, expected {self.bun_version}")

    def claude_code_version_found(self, out: list[str]) -> None:
        words = run(self.as_user(CLAUDE_PATH, "--version"), out).split()
        found = words[0] if words else ""
        self.versions["claude_code"] = found[:64]
        if found != self.claude_code_version:
            raise StepFailed(1, f"claude reports {found!r}, expected {self.claude_code_version}")

    def head(self) -> str | None:
        """The commit checked out in the clone, if there is a clone."""
        if not os.path.isdir(os.path.join(CLONE_DIR, ".git")):
            return None
        try:
            found = run(self.as_user("git", "-C", CLONE_DIR, "rev-parse", "HEAD"), [])
        except StepFailed:
            return None
        return found if _COMMIT.fullmatch(found) else None


# <verify> (only a server made from an image checks: the stock user data drops it)
class Verify(Install):
    """The steps' checks: each result is on the disk (a snapshot image's)."""

    def __init__(self, manifest: dict[str, str]) -> None:
        super().__init__(manifest)
        self.steps = {
            "packages": self.packages_present,
            "user": self.check_user,
            "bun": self.bun_version_found,
            "claude_code": self.claude_code_version_found,
            "clone": self.release_linked,
            "dependencies": self.dependencies_present,
            "shared_folder": self.shared_folder_present,
            "unit": self.unit_enabled,
        }

    def packages_present(self, out: list[str]) -> None:
        for name in PACKAGES:
            status = run(["dpkg-query", "-W", "-f=${Status}", name], out)
            if not status.endswith(" installed"):
                raise StepFailed(1, f"package {name} is not installed ({status})")

    def release_linked(self, out: list[str]) -> None:
        release = f"{RELEASES_DIR}/{self.commit}"
        if os.path.realpath(CLONE_DIR) != os.path.realpath(release):
            raise StepFailed(1, f"{CLONE_DIR} does not link to {release}")
        head = self.head()
        if head != self.commit:
            raise StepFailed(1, f"HEAD is {head}, expected {self.commit}")

    def dependencies_present(self, out: list[str]) -> None:
        if not os.path.isdir(os.path.join(CLONE_DIR, "node_modules")):
            raise StepFailed(1, f"{CLONE_DIR}/node_modules is missing")

    def shared_folder_present(self, out: list[str]) -> None:
        if not os.path.isdir(SHARED_DIR):
            raise StepFailed(1, f"{SHARED_DIR} is missing")

    def unit_enabled(self, out: list[str]) -> None:
        if not os.path.isfile(UNIT_PATH):
            raise StepFailed(1, f"{UNIT_PATH} is missing")
        run(["systemctl", "is-enabled", "--quiet", UNIT], out)


# </verify>


def without_token(text: str, token: str) -> str:
    """`text` with the callback token masked (a command may have echoed its environment)."""
    return text.replace(token, "[redacted]") if token else text


def scrub(text: str, token: str) -> str:
    """`text` without the callback token, at most MAX_LOG_TAIL characters from its end."""
    return without_token(text, token)[-MAX_LOG_TAIL:]


def cloud_init_status(token: str) -> dict[str, object]:
    """cloud-init's own view (`running` while it runs us) and its first errors."""
    try:
        proc = subprocess.run(
            ["cloud-init", "status", "--format", "json"],  # noqa: S607 - on PATH by design
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,  # it exits non-zero when it has errors to report
        )
        data = json.loads(proc.stdout.decode("utf-8", "replace"))
    except (OSError, ValueError, subprocess.SubprocessError):
        return {"status": "unknown", "errors": []}
    if not isinstance(data, dict):
        return {"status": "unknown", "errors": []}
    errors = data.get("errors")
    listed = errors if isinstance(errors, list) else []
    return {
        "status": scrub(str(data.get("status", "unknown")), token)[:64],
        "errors": [
            scrub(str(error), token)[:MAX_ERROR_LENGTH] for error in listed[:MAX_CLOUD_INIT_ERRORS]
        ],
    }


def install(
    manifest: dict[str, str], token: str, log: list[str], verify: bool = False
) -> dict[str, object]:
    """Run the steps (or, `verify`, their checks) in order; the outcome in the format
    of core.cloud.vps_contract."""
    job = Verify(manifest) if verify else Install(manifest)
    failed: str | None = None
    status: int | None = None
    tail = ""
    for name in STEPS:
        out: list[str] = []
        started = time.monotonic()
        try:
            job.steps[name](out)
        except StepFailed as exc:
            failed, status = name, exc.status
            out.append(f"step {name} failed: {exc.reason}\n")
        except Exception:  # an unforeseen error is the step's failure, reported
            failed = name
            out.append(traceback.format_exc())
        log.append(f"== {name} ({time.monotonic() - started:.1f}s)\n" + "".join(out))
        if failed is not None:
            tail = "".join(out)
            break
    return {
        "ok": failed is None,
        "failed_step": failed,
        "exit_status": status,
        "log_tail": scrub(tail, token),
        "cloud_init": cloud_init_status(token),
        "commit": job.head(),
        "versions": job.versions,
    }


def main() -> int:
    """Install (or VERIFY), record the outcome; exit 0 only when every step succeeded."""
    verify = sys.argv[1:] == [VERIFY]
    token = read_env(BOOTSTRAP_ENV).get(TOKEN_VAR, "")
    log: list[str] = []
    result = install(read_env(INSTALL_ENV), token, log, verify)
    write_private(LOG_PATH, without_token("".join(log), token), 0o600)
    write_private(RESULT, json.dumps(result, indent=1) + "\n", 0o600)
    where = "every step succeeded" if result["ok"] else f"failed at {result['failed_step']}"
    print(f"rachel-cloud install: {where}; outcome in {RESULT}, log in {LOG_PATH}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
