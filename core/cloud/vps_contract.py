"""What the control plane expects of a VPS, shared by cloud-init, the injection and the simulator.

A real VPS gets these through its `#cloud-config` user data; the simulator
reads the same files from the user data it is given and acts on them as a
real box would. Keeping the paths and formats in one module means the two can
never drift apart. What Rachel8 itself requires (`../shared/rachel8/`) is
not decided here: the simulator checks it with rules of its own, so a wrong
belief of the control plane fails a test instead of a customer's bot.

## First boot
cloud-init creates the Rachel8 user (no sudo, no password) and writes:
- `INSTALL_ENV_PATH` (0644, no secret): `RACHEL8_REPO`, `RACHEL8_COMMIT`,
  `BUN_VERSION`, `CLAUDE_CODE_VERSION` and `RACHEL_USER` lines;
- the install script (`INSTALL_SCRIPT_PATH`), which runs `INSTALL_STEPS` in
  order as that user where it can, stops at the first failure, and writes
  the outcome as JSON to `INSTALL_RESULT_PATH`;
- the Rachel8 unit (`SERVICE_UNIT_PATH`): enabled, not started (it has no
  `.env` yet);
- `BOOTSTRAP_ENV_PATH` (0600) with `RACHEL_CALLBACK_URL` and
  `RACHEL_CALLBACK_TOKEN` lines, and the bootstrap script, which runs last.

## From a snapshot image
A server made from a snapshot image (`core.domain.images`) finds the install
on its disk. Its user data authorises its own key, writes the manifest, the
install script, the bootstrap env and script and the agent, and its runcmd
runs `INSTALL_SCRIPT_PATH INSTALL_VERIFY_ARG` before the bootstrap: each
install step only checks its result (the packages, the user, Bun's and Claude
Code's versions, the link to the manifest's commit and its HEAD, the
dependencies, the shared folder, the unit enabled) and the outcome is written
afresh, so the callback reports this server's install, never the builder's.
The builder removed its own leftovers before it was snapshotted (root's
`authorized_keys`, the bootstrap env, the install's result and log).

## The callback
The bootstrap POSTs `{"host_key": "<contents of HOST_KEY_PATH>", "install":
<the install result>}` to the callback URL with `Authorization: Bearer
<token>`, retrying until it gets a 2xx answer. The install result is:

    {"ok": true|false,
     "failed_step": null | one of INSTALL_STEPS,
     "exit_status": null | int,            # of the failed step
     "log_tail": "...",                    # at most MAX_LOG_TAIL characters, token removed
     "cloud_init": {"status": "...", "errors": ["...", ...]},   # at most MAX_CLOUD_INIT_ERRORS
     "commit": null | "<40 hex>",          # what `git rev-parse HEAD` says in the clone
     "versions": {"bun": "...", "claude_code": "..."}}

## Releases
Each Rachel8 commit a VPS has installed is a full clone of its own,
checked out detached, in `Layout.release_dir(commit)` (`~/releases/<40 hex>`,
the user's). `Layout.clone_dir` (`~/rachel8`, the unit's `WorkingDirectory`)
is a symlink owned by the user, with the relative target
`Layout.link_target(commit)` (`releases/<commit>`): the release that runs.
Everything that reads or writes "the clone" (`.env`, `.git/HEAD`) goes
through the link, so it always means the running release. The install
clones into the release dir of its commit and makes the link; a VPS
installed before releases existed has a real directory there instead, which
the update script's `prepare` moves into place first (step `layout`).

## Updates
The update script (`UPDATE_SCRIPT_PATH`, python3 and its standard library)
is not in the user data: every update uploads it over SFTP (root's, mode
`UPDATE_SCRIPT_MODE`, written atomically) and runs it as root, one stage
per SSH command: `UPDATE_SCRIPT_PATH <stage> [arg]`. Each stage prints ONE
line of JSON on its standard output and exits 0 when `ok` (1 when not, 2
for bad arguments):

    {"ok": true|false,
     "stage": "prepare" | "switch" | "prune",
     "commit": null | "<40 hex>",     # the release the stage was about (prune: the current)
     "previous": null | "<40 hex>",   # the release running before it
     "failed_step": null | one of UPDATE_STEPS,
     "exit_status": null | int,       # of the failed step's command
     "log_tail": "...",               # at most MAX_LOG_TAIL characters, no secret
     "service": null | {"ActiveState": ..., "SubState": ..., "NRestarts": ...,
                        "Result": ..., "ExecMainStatus": ...},   # switch: SERVICE_PROPERTIES
     "removed": ["<40 hex>", ...]}    # prune: the release dirs it deleted

- `prepare <commit>`: idempotent; ok at once when the release dir holds the
  commit (`.git/HEAD`) and `node_modules`. Otherwise, as the user (runuser,
  a clean environment, as the install): clone into `<release dir>.partial`
  (a leftover one removed first), `checkout --detach`, `bun install
  --frozen-lockfile`, copy the running release's `.env` (mode 0600, the
  user's), rename the `.partial` dir into place. Steps `layout`, `clone`,
  `dependencies`, `env`.
- `switch <commit>`: the release must be prepared (step `release`); the link
  is repointed atomically (a new link renamed over it; step `link`),
  `UPDATE_STATE_PATH` keeps `{"current": c, "previous": p}`, Rachel8 is
  restarted (`reset-failed` first: a crash-looped unit's start limit would
  refuse it; step `restart`) and the agent started at once (`systemctl
  start --no-block`), so a heartbeat tells of the new release without
  waiting for the timer. Switching to the running commit restarts only a
  unit that is not active.
- `prune <keep>`: deletes release dirs (and leftover `.partial` ones) but
  the current, the previous and the newest others, `keep` in all.

## Injection
`.env` in the clone (`Layout.env_path`, through the link: in the running
release) and the Claude credentials
(`Layout.credentials_path`), both mode `SECRET_MODE` and owned by the user,
each written to a temp file beside it and renamed over it. Then the unit is
(re)started and watched (`systemctl show` with `SERVICE_PROPERTIES`).

## The health agent
cloud-init also writes the agent (`AGENT_SCRIPT_PATH`, python3 and its
standard library only) with its service (`AGENT_SERVICE_PATH`, `Type=oneshot`,
as root) and timer (`AGENT_TIMER_PATH`, `OnUnitActiveSec=` RACHEL_HEARTBEAT_INTERVAL);
neither is enabled at first boot, because the agent has no credential yet.
The injection writes `AGENT_ENV_PATH` (0600, root) with `HEARTBEAT_URL_VAR`,
`HEARTBEAT_CREDENTIAL_VAR` and `TELEGRAM_API_VAR` lines, then runs
`systemctl enable --now AGENT_TIMER_UNIT`. Each run of the agent takes as its sequence
the larger of the last one (kept in `AGENT_STATE_PATH`) plus one and the time in
milliseconds (so a lost state file does not make it a replayer) and POSTs one heartbeat (JSON,
`core.domain.heartbeats.Heartbeat`) to the heartbeat URL with
`Authorization: Bearer <credential>`:

    {"seq": 42,                                  # strictly increasing per server
     "sent_at": 1796000000.5,                    # the box's clock, epoch seconds
     "agent": "1",                               # AGENT_VERSION
     "service": {"active": "active", "sub": "running", "restarts": 0,
                 "result": "success", "exit_status": 0},   # SERVICE_PROPERTIES
     "commit": "<40 hex>" | null,                # the clone's detached HEAD
     "uptime_seconds": 1234.5,                   # /proc/uptime
     "disk_free_bytes": 1, "disk_total_bytes": 2,   # statvfs("/")
     "memory_available_bytes": 1, "memory_total_bytes": 2,   # /proc/meminfo
     "telegram": {"get_me": "ok" | "unauthorized" | "error" | "unconfigured",
                  "webhook_set": true | false | null,      # getWebhookInfo's url
                  "conflicts": 0}}   # 409 lines in Rachel8's journal (see below)

`conflicts` counts the `409 Conflict` lines (another poller; not a webhook's 409s,
which `webhook_set` reports) in Rachel8's journal since the last run, or since
Rachel8's process last started (`ExecMainStartTimestamp`) when that is earlier: a
Rachel8 that exited on a 409 keeps showing it until it starts again.

The bot token is read from Rachel8's `.env`; it never leaves the box but to Telegram.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

#: KEY=VALUE lines (shell-sourceable) with the callback URL and one-time token.
BOOTSTRAP_ENV_PATH = "/etc/rachel-cloud/bootstrap.env"
#: The bootstrap script cloud-init runs last.
BOOTSTRAP_SCRIPT_PATH = "/usr/local/sbin/rachel-cloud-bootstrap"
CALLBACK_URL_VAR = "RACHEL_CALLBACK_URL"
CALLBACK_TOKEN_VAR = "RACHEL_CALLBACK_TOKEN"  # noqa: S105 - a variable name, not a token
#: The SSH host public key the callback reports (OpenSSH one-line format).
HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key.pub"

#: What to install: KEY=VALUE lines, no secret.
INSTALL_ENV_PATH = "/etc/rachel-cloud/install.env"
REPO_VAR = "RACHEL8_REPO"
COMMIT_VAR = "RACHEL8_COMMIT"
BUN_VERSION_VAR = "BUN_VERSION"
CLAUDE_CODE_VERSION_VAR = "CLAUDE_CODE_VERSION"
USER_VAR = "RACHEL_USER"
#: The install script and where it leaves its outcome (JSON, the format above).
INSTALL_SCRIPT_PATH = "/usr/local/sbin/rachel-cloud-install"
INSTALL_RESULT_PATH = "/var/lib/rachel-cloud/install.json"
#: The install script's argument that checks each step's result instead of doing it.
INSTALL_VERIFY_ARG = "verify"

#: The install's steps, in order; a failure names one of these.
STEP_PACKAGES = "packages"
STEP_USER = "user"
STEP_BUN = "bun"
STEP_CLAUDE_CODE = "claude_code"
STEP_CLONE = "clone"
STEP_DEPENDENCIES = "dependencies"
STEP_SHARED_FOLDER = "shared_folder"
STEP_UNIT = "unit"
INSTALL_STEPS = (
    STEP_PACKAGES,
    STEP_USER,
    STEP_BUN,
    STEP_CLAUDE_CODE,
    STEP_CLONE,
    STEP_DEPENDENCIES,
    STEP_SHARED_FOLDER,
    STEP_UNIT,
)
#: The Debian packages the install needs (the replaced service's list: voice
#: messages need ffmpeg, native modules a compiler and cmake).
PACKAGES = ("git", "curl", "unzip", "ca-certificates", "ffmpeg", "build-essential", "cmake")
MAX_LOG_TAIL = 2000
MAX_CLOUD_INIT_ERRORS = 5

#: The update script (see "Updates" above): uploaded with every update, root's.
UPDATE_SCRIPT_PATH = "/usr/local/sbin/rachel-cloud-update"
UPDATE_SCRIPT_MODE = 0o700
#: `{"current": "<commit>", "previous": "<commit>" | null}`, written by `switch`.
UPDATE_STATE_PATH = "/var/lib/rachel-cloud/releases.json"
#: The update script's full output, for an operator (root only).
UPDATE_LOG_PATH = "/var/log/rachel-cloud-update.log"
#: Held (flock) by a running stage: a second one at the same time fails at step `lock`.
UPDATE_LOCK_PATH = "/var/lib/rachel-cloud/update.lock"
STAGE_PREPARE = "prepare"
STAGE_SWITCH = "switch"
STAGE_PRUNE = "prune"
UPDATE_STAGES = (STAGE_PREPARE, STAGE_SWITCH, STAGE_PRUNE)
#: What a stage's failure names (`clone` and `dependencies` as the install's).
STEP_ARGUMENTS = "arguments"
STEP_LOCK = "lock"
STEP_LAYOUT = "layout"
STEP_ENV = "env"
STEP_RELEASE = "release"
STEP_LINK = "link"
STEP_RESTART = "restart"
STEP_PRUNE = "prune"
UPDATE_STEPS = (
    STEP_ARGUMENTS,
    STEP_LOCK,
    STEP_LAYOUT,
    STEP_CLONE,
    STEP_DEPENDENCIES,
    STEP_ENV,
    STEP_RELEASE,
    STEP_LINK,
    STEP_RESTART,
    STEP_PRUNE,
)
#: A release dir being prepared: `<release dir>` + this; never run, removed when left over.
PARTIAL_SUFFIX = ".partial"

#: The Rachel8 systemd unit (a system unit with `User=`).
SERVICE_UNIT = "rachel8.service"
SERVICE_UNIT_PATH = "/etc/systemd/system/rachel8.service"
#: `systemctl show -p ...`: what tells "running" from "crash-looping".
SERVICE_PROPERTIES = ("ActiveState", "SubState", "NRestarts", "Result", "ExecMainStatus")
SECRET_MODE = 0o600
PRIVATE_DIR_MODE = 0o700

#: The health agent (see "The health agent" above).
AGENT_VERSION = "1"
AGENT_SCRIPT_PATH = "/usr/local/sbin/rachel-cloud-agent"
AGENT_ENV_PATH = "/etc/rachel-cloud/agent.env"
#: The agent's own state between runs: `{"seq": N, "at": epoch seconds of the last run}`.
AGENT_STATE_PATH = "/var/lib/rachel-cloud/agent.json"
AGENT_SERVICE_UNIT = "rachel-cloud-agent.service"
AGENT_SERVICE_PATH = "/etc/systemd/system/rachel-cloud-agent.service"
AGENT_TIMER_UNIT = "rachel-cloud-agent.timer"
AGENT_TIMER_PATH = "/etc/systemd/system/rachel-cloud-agent.timer"
HEARTBEAT_URL_VAR = "RACHEL_HEARTBEAT_URL"
HEARTBEAT_CREDENTIAL_VAR = "RACHEL_HEARTBEAT_CREDENTIAL"
TELEGRAM_API_VAR = "RACHEL_TELEGRAM_API_URL"
#: Telegram get_me answers the agent reports.
GET_ME_OK = "ok"
GET_ME_UNAUTHORIZED = "unauthorized"
GET_ME_ERROR = "error"
GET_ME_UNCONFIGURED = "unconfigured"
GET_ME_ANSWERS = (GET_ME_OK, GET_ME_UNAUTHORIZED, GET_ME_ERROR, GET_ME_UNCONFIGURED)

#: Rachel8's `.env` keys.
ENV_BOT_TOKEN = "TELEGRAM_BOT_TOKEN"  # noqa: S105 - a key name
ENV_OWNER_ID = "OWNER_TELEGRAM_USER_ID"
ENV_SHARED_FOLDER = "SHARED_FOLDER_PATH"
ENV_AI_PROVIDER = "AI_PROVIDER"
ENV_NODE_ENV = "NODE_ENV"
ENV_LOG_LEVEL = "LOG_LEVEL"
ENV_STT_PROVIDER = "STT_PROVIDER"
ENV_GROQ_API_KEY = "GROQ_API_KEY"
ENV_OPENAI_API_KEY = "OPENAI_API_KEY"


@dataclass(frozen=True)
class Layout:
    """Where Rachel8 lives on a VPS, for its user.

    Attributes:
        user: the unprivileged user Rachel8 runs as.
    """

    user: str = "rachel"

    @property
    def home(self) -> str:
        return f"/home/{self.user}"

    @property
    def clone_dir(self) -> str:
        """Rachel8's working directory: a link to the running release (see "Releases")."""
        return f"{self.home}/rachel8"

    @property
    def releases_dir(self) -> str:
        """Where every installed release has its clone."""
        return f"{self.home}/releases"

    def release_dir(self, commit: str) -> str:
        """The clone of `commit` (40 hex), checked out detached."""
        return f"{self.releases_dir}/{commit}"

    def link_target(self, commit: str) -> str:
        """`clone_dir`'s target when `commit` runs: relative, so it means the same
        wherever the home directory is seen from (a chroot, a backup)."""
        return f"{posixpath.basename(self.releases_dir)}/{commit}"

    @property
    def env_path(self) -> str:
        """Rachel8's configuration, read from its working directory."""
        return f"{self.clone_dir}/.env"

    @property
    def git_head_path(self) -> str:
        """The clone's HEAD: the commit itself, since it is checked out detached."""
        return f"{self.clone_dir}/.git/HEAD"

    @property
    def claude_dir(self) -> str:
        return f"{self.home}/.claude"

    @property
    def credentials_path(self) -> str:
        """The Claude Code CLI's OAuth credentials."""
        return f"{self.claude_dir}/.credentials.json"

    @property
    def shared_dir(self) -> str:
        """`SHARED_FOLDER_PATH`: the folder Rachel8 shares with its owner."""
        return f"{self.home}/shared"

    @property
    def bin_dir(self) -> str:
        """Bun's install directory's bin: `bun`, and `claude` (a Bun global)."""
        return f"{self.home}/.bun/bin"

    @property
    def bun_path(self) -> str:
        return f"{self.bin_dir}/bun"

    @property
    def claude_path(self) -> str:
        return f"{self.bin_dir}/claude"

    @property
    def service_path_env(self) -> str:
        """The unit's `PATH`: `bun` and `claude` resolve first."""
        return f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin"
