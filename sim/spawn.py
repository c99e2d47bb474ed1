"""What systemd checks between the fork and the exec of a unit's process.

`User=` must exist (217/USER), `WorkingDirectory=` must be enterable by that
user (200/CHDIR), and `ExecStart`'s program must be found (a relative name on
systemd's search path) and be executable by that user (203/EXEC); a script
must name an interpreter the box has (`#!`), else the kernel refuses it with
"Exec format error". A failure is the process exiting with that status at
once, with systemd's own message in the journal.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.accounts import ROOT, Account
from sim.cloudconfig import parse_env_file
from sim.rootfs import EXECUTE, RootFs
from sim.service import Launch
from sim.units import UnitFile

#: The search path systemd resolves a relative ExecStart with, and the unit's default PATH.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Interpreters an Ubuntu 24.04 cloud image has (a script's `#!` line).
INTERPRETERS = frozenset(
    {"/bin/sh", "/bin/bash", "/usr/bin/sh", "/usr/bin/bash", "/usr/bin/python3", "/bin/python3"}
)
_ENV_INTERPRETERS = frozenset({"sh", "bash", "python3"})


@dataclass(frozen=True)
class Spawned:
    """A process past systemd's checks: who runs it, where, with what environment."""

    account: Account
    cwd: str
    executable: str
    environment: dict[str, str]


def spawn_failure(step: str, status: int, executable: str, *lines: str) -> Launch:
    """The process never ran: systemd's messages and the step's exit status."""
    reason = "No such process" if step == "USER" else lines[-1].rsplit(": ", 1)[-1]
    return Launch(
        exit_status=status,
        systemd_output=(*lines, f"Failed at step {step} spawning {executable}: {reason}"),
    )


def find_executable(fs: RootFs, name: str, path: str, account: Account) -> str | None:
    """`name` resolved on `path` (or as given, when it has a slash), if `account` may run it."""
    candidates = [name] if "/" in name else [f"{d}/{name}" for d in path.split(":") if d]
    for candidate in candidates:
        real = fs.real(candidate, "/")
        if (
            real.is_file()
            and fs.reachable(candidate, account)
            and fs.allows(candidate, account, EXECUTE)
        ):
            return candidate
    return None


def _interpreter_ok(fs: RootFs, executable: str) -> bool:
    with fs.real(executable, "/").open("rb") as handle:
        head = handle.read(256)
    if not head.startswith(b"#!"):
        # An ELF binary (the simulator's stand-ins for bun and claude are scripts or empty).
        return head.startswith(b"\x7fELF") or not head.strip()
    words = head[2:].split(b"\n", 1)[0].decode(errors="replace").split()
    if not words:
        return False
    if words[0] in ("/usr/bin/env", "/bin/env"):
        return len(words) > 1 and words[1] in _ENV_INTERPRETERS
    return words[0] in INTERPRETERS


def environment(fs: RootFs, unit: UnitFile, account: Account) -> dict[str, str]:
    """The process environment: systemd's PATH, the user's, `Environment=`, the env files."""
    env = {"PATH": SYSTEMD_PATH}
    if unit.user:
        env |= {
            "HOME": account.home,
            "USER": account.name,
            "LOGNAME": account.name,
            "SHELL": account.shell,
        }
    env |= unit.environment
    for path, _optional in unit.environment_files:
        real = fs.real(path, "/")
        if real.is_file():
            env |= parse_env_file(real.read_text(errors="replace"))
    return env


def spawn(fs: RootFs, unit: UnitFile, *, check_interpreter: bool = False) -> Spawned | Launch:
    """systemd's checks for starting `unit`: the process to run, or the failure (a Launch)."""
    account = fs.accounts.get(unit.user) if unit.user else ROOT
    executable = unit.exec_start[0] if unit.exec_start else ""
    if account is None:
        return spawn_failure(
            "USER", 217, executable, "Failed to determine user credentials: No such process"
        )
    cwd = unit.working_directory or "/"
    if not fs.real(cwd, "/").is_dir() or not (
        fs.reachable(cwd, account) and fs.allows(cwd, account, EXECUTE)
    ):
        return spawn_failure(
            "CHDIR",
            200,
            executable,
            "Changing to the requested working directory failed: No such file or directory",
        )
    found = find_executable(fs, executable, SYSTEMD_PATH, account) if executable else None
    if found is None:
        return spawn_failure(
            "EXEC",
            203,
            executable,
            f"Failed to locate executable {executable}: No such file or directory",
        )
    if check_interpreter and not _interpreter_ok(fs, found):
        return spawn_failure(
            "EXEC", 203, executable, f"Failed to execute {found}: Exec format error"
        )
    return Spawned(account, cwd, found, environment(fs, unit, account))
