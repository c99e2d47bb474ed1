"""What starting the Rachel8 unit does on a simulated VPS: systemd's checks, then Rachel8's.

A unit whose ExecStart is `<bun> run src/index.ts` is Rachel8. Each start
checks, as systemd would before the exec, that `User=` exists (217/USER),
`WorkingDirectory=` can be entered (200/CHDIR) and the executable can be
run by that user (203/EXEC); then, as Rachel8 would: `.env` in the working
directory (none: a hint and exit 0), its values (`sim.rachel8_env`), the
AI provider, the shared folder, `claude` on the unit's `PATH` and the Claude
credentials under `$HOME` (owner, mode 0600, document). Any failure is
exit 1 with what Rachel8 would print; otherwise it goes on to Telegram
(`sim.rachel8_telegram`: the bot token, webhooks, other pollers, faults).

What runs is the release checked out in the working directory (its
`.git/HEAD`, through the `~/rachel8` link): a `crash_at_start` release
throws at import, before reading `.env`; `crash_later` and `polling_fails`
get as far as Telegram (`sim.rachel8.DEFECTS`).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any

from core.cloud import vps_contract
from sim import rachel8
from sim.accounts import Account
from sim.rachel8_env import ai_provider, parse_dotenv, report, validate
from sim.rachel8_telegram import STARTUP_SECONDS, Outside, bun_of
from sim.rachel8_telegram import start as telegram_start
from sim.releases import release_of
from sim.rootfs import READ, RootFs
from sim.service import Launch
from sim.spawn import Spawned, find_executable, spawn
from sim.units import UnitFile

CREDENTIALS = ".claude/.credentials.json"
SECRET_MODE = 0o600
#: A `crash_at_start` release: its new router module throws while being imported.
IMPORT_ERROR = (
    "TypeError: undefined is not a function (near '...handlers.map(register)...')",
    "      at {clone}/src/telegram/router.ts:17:3",
    "      at loadAndEvaluateModule (1:11)",
)
#: Where a `polling_fails` release (webhook mode by default) registers its webhook.
WEBHOOK_URL = "https://{hostname}:8443/telegram"


def is_rachel8(unit: UnitFile) -> bool:
    """Whether the unit runs Rachel8: `bun run src/index.ts`."""
    argv = unit.exec_start
    return (
        len(argv) == 3
        and posixpath.basename(argv[0]) == "bun"
        and argv[1:] == ["run", "src/index.ts"]
    )


def _crash(*lines: str) -> Launch:
    return Launch(output=lines, exit_status=1, runtime=STARTUP_SECONDS)


class Rachel8Start:
    """One start of the Rachel8 unit on one VPS's filesystem.

    Args:
        outside: Telegram and the faults aimed at the VPS (none: Rachel8 only
            checks its configuration and runs).
    """

    def __init__(
        self, fs: RootFs, outside: Outside | None = None, hostname: str = "localhost"
    ) -> None:
        self.fs = fs
        self.outside = outside or Outside()
        self.hostname = hostname

    def __call__(self, unit: UnitFile) -> Launch:
        spawned = spawn(self.fs, unit)
        if isinstance(spawned, Launch):
            return spawned
        return self._rachel8(spawned)

    def _rachel8(self, spawned: Spawned) -> Launch:
        cwd, account, env = spawned.cwd, spawned.account, spawned.environment

        def at(name: str) -> str:
            return posixpath.join(cwd, name)

        if not self.fs.real(at("src/index.ts"), "/").is_file():
            return _crash(f'error: Module not found "{at("src/index.ts")}"')
        if not self.fs.real(at("node_modules"), "/").is_dir():
            return _crash(f'error: Cannot find package "grammy" from "{at("src/index.ts")}"')
        release = release_of(self.fs, cwd)
        defect = release.defect if release is not None else None
        if defect == rachel8.CRASH_AT_START:
            return _crash(*bun_of(self.fs, cwd).uncaught(*IMPORT_ERROR))
        return self._configured(account, cwd, env, defect)

    def _configured(
        self, account: Account, cwd: str, env: dict[str, str], defect: str | None
    ) -> Launch:
        dotenv = posixpath.join(cwd, ".env")
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
        owner = merged[vps_contract.ENV_OWNER_ID].strip()
        return telegram_start(
            self.outside,
            merged[vps_contract.ENV_BOT_TOKEN],
            owner,
            bun_of(self.fs, cwd),
            defect=defect,
            webhook_url=WEBHOOK_URL.format(hostname=self.hostname),
        )

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
        if find_executable(self.fs, "claude", path, account) is None:
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
