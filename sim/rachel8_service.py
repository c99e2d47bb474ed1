"""What starting the Rachel8 unit does on a simulated VPS: systemd's checks, then Rachel8's.

A unit whose ExecStart is `<bun> run src/index.ts` is Rachel8. Each start
checks, as systemd would before the exec, that `User=` exists (217/USER),
`WorkingDirectory=` can be entered (200/CHDIR) and the executable can be
run by that user (203/EXEC); then, as Rachel8 would: `.env` in the working
directory (none: a hint and exit 0), its values (`sim.rachel8_env`), the
AI provider, the shared folder, `claude` on the unit's `PATH` and the Claude
credentials under `$HOME` (owner, mode 0600, document). Any failure is
exit 1 with what Rachel8 would print; otherwise it keeps running.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any

from sim.accounts import ROOT, Account
from sim.cloudconfig import parse_env_file
from sim.rachel8_env import ai_provider, parse_dotenv, report, validate
from sim.rootfs import EXECUTE, READ, RootFs
from sim.service import Launch
from sim.units import UnitFile

#: The search path systemd resolves a relative ExecStart with, and the unit's default PATH.
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Simulated seconds Rachel8 takes to load and validate before exiting or running.
STARTUP_SECONDS = 0.5
CREDENTIALS = ".claude/.credentials.json"
SECRET_MODE = 0o600


def is_rachel8(unit: UnitFile) -> bool:
    """Whether the unit runs Rachel8: `bun run src/index.ts`."""
    argv = unit.exec_start
    return (
        len(argv) == 3
        and posixpath.basename(argv[0]) == "bun"
        and argv[1:] == ["run", "src/index.ts"]
    )


def _spawn_failure(step: str, status: int, executable: str, *lines: str) -> Launch:
    reason = "No such process" if step == "USER" else lines[-1].rsplit(": ", 1)[-1]
    return Launch(
        exit_status=status,
        systemd_output=(*lines, f"Failed at step {step} spawning {executable}: {reason}"),
    )


def _crash(*lines: str) -> Launch:
    return Launch(output=lines, exit_status=1, runtime=STARTUP_SECONDS)


class Rachel8Start:
    """One start of the Rachel8 unit on one VPS's filesystem."""

    def __init__(self, fs: RootFs) -> None:
        self.fs = fs

    def _executable(self, name: str, path: str, account: Account) -> str | None:
        candidates = [name] if "/" in name else [f"{d}/{name}" for d in path.split(":") if d]
        for candidate in candidates:
            real = self.fs.real(candidate, "/")
            if (
                real.is_file()
                and self.fs.reachable(candidate, account)
                and self.fs.allows(candidate, account, EXECUTE)
            ):
                return candidate
        return None

    def __call__(self, unit: UnitFile) -> Launch:
        account = self.fs.accounts.get(unit.user) if unit.user else ROOT
        executable = unit.exec_start[0]
        if account is None:
            return _spawn_failure(
                "USER", 217, executable, "Failed to determine user credentials: No such process"
            )
        cwd = unit.working_directory or "/"
        if not self.fs.real(cwd, "/").is_dir() or not (
            self.fs.reachable(cwd, account) and self.fs.allows(cwd, account, EXECUTE)
        ):
            return _spawn_failure(
                "CHDIR",
                200,
                executable,
                "Changing to the requested working directory failed: No such file or directory",
            )
        if self._executable(executable, SYSTEMD_PATH, account) is None:
            return _spawn_failure(
                "EXEC",
                203,
                executable,
                f"Failed to locate executable {executable}: No such file or directory",
            )
        return self._rachel8(unit, account, cwd, self._environment(unit, account))

    def _environment(self, unit: UnitFile, account: Account) -> dict[str, str]:
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
            real = self.fs.real(path, "/")
            if real.is_file():
                env |= parse_env_file(real.read_text(errors="replace"))
        return env

    def _rachel8(self, unit: UnitFile, account: Account, cwd: str, env: dict[str, str]) -> Launch:
        def at(name: str) -> str:
            return posixpath.join(cwd, name)

        if not self.fs.real(at("src/index.ts"), "/").is_file():
            return _crash(f'error: Module not found "{at("src/index.ts")}"')
        if not self.fs.real(at("node_modules"), "/").is_dir():
            return _crash(f'error: Cannot find package "grammy" from "{at("src/index.ts")}"')
        return self._configured(account, at(".env"), env)

    def _configured(self, account: Account, dotenv: str, env: dict[str, str]) -> Launch:
        if not self.fs.real(dotenv, "/").is_file():
            return Launch(
                output=("No .env file found.", "Run the setup wizard: bun run setup"),
                exit_status=0,
                runtime=STARTUP_SECONDS,
            )
        readable = self.fs.reachable(dotenv, account) and self.fs.allows(dotenv, account, READ)
        # Bun skips a .env it cannot read, as if it were empty: the schema then sees nothing.
        text = self.fs.real(dotenv, "/").read_text(errors="replace") if readable else ""
        values = parse_dotenv(text, env)
        # Variables already in the process environment win over .env, as in Bun.
        merged = values | env
        issues = validate(merged)
        if issues:
            return _crash(*report(issues))
        if ai_provider(merged) != "claudecode":
            return _crash(
                "error: AI_PROVIDER is codex (Rachel8's default): the Codex CLI is not installed "
                "here; set AI_PROVIDER=claudecode to use Claude",
            )
        problem = self._shared_folder(merged["SHARED_FOLDER_PATH"], account)
        problem = problem or self._claude_on_path(merged.get("PATH", ""), account)
        problem = problem or self._credentials(merged.get("HOME", account.home), account)
        if problem:
            return _crash(problem)
        return Launch(output=("Rachel8 is running (polling mode)",), runtime=STARTUP_SECONDS)

    def _shared_folder(self, path: str, account: Account) -> str | None:
        real = self.fs.real(path, "/")
        owner = self.fs.owners.get(self.fs.virtual(path, "/"))
        if not real.is_dir() or owner[0] != account.uid:
            return (
                f"error: SHARED_FOLDER_PATH {path} is not a directory owned by {account.name}: "
                "Rachel8 cannot keep the files it shares there"
            )
        return None

    def _claude_on_path(self, path: str, account: Account) -> str | None:
        if self._executable("claude", path, account) is None:
            return (
                "error: Claude Code executable not found on PATH "
                f"({path}): the Claude Agent SDK needs the `claude` CLI"
            )
        return None

    def _credentials(self, home: str, account: Account) -> str | None:
        path = posixpath.join(home, CREDENTIALS)
        real = self.fs.real(path, "/")
        prefix = f"error: Claude Code credentials {path}"
        if not real.is_file() or not self.fs.reachable(path, account):
            return f"{prefix}: not found (Invalid API key · Please run /login)"
        uid, _gid = self.fs.owners.get(self.fs.virtual(path, "/"))
        if uid != account.uid:
            return f"{prefix}: owned by {self.fs.accounts.user_name(uid)}, not {account.name}"
        mode = self.fs.mode(path)
        if mode != SECRET_MODE:
            return f"{prefix}: mode {mode:04o}, must be 0600"
        try:
            document = json.loads(real.read_text())
        except (ValueError, UnicodeDecodeError):
            return f"{prefix}: not valid JSON (Invalid API key · Please run /login)"
        why = _oauth_problem(document)
        return f"{prefix}: {why} (Invalid API key · Please run /login)" if why else None


def _oauth_problem(document: Any) -> str | None:
    oauth = document.get("claudeAiOauth") if isinstance(document, dict) else None
    if not isinstance(oauth, Mapping):
        return "no claudeAiOauth object"
    for key in ("accessToken", "refreshToken"):
        if not isinstance(oauth.get(key), str) or not oauth[key]:
            return f"claudeAiOauth.{key} missing"
    expires = oauth.get("expiresAt")
    if isinstance(expires, bool) or not isinstance(expires, int):
        return "claudeAiOauth.expiresAt is not an integer (ms since the epoch)"
    scopes = oauth.get("scopes")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        return "claudeAiOauth.scopes is not a list of scopes"
    return None
