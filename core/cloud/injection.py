"""Injecting a customer's Rachel8 configuration into their VPS, and watching it start.

Over one SSH session (`core.cloud.ssh`, host key pinned):

1. The user's uid and gid, from their home directory (the install made it).
2. The Claude credentials already on the VPS, if any. The Claude Code CLI
   refreshes its access token itself and may rotate the refresh token, so
   after a while the VPS's copy is newer than the one the dashboard gave us:
   writing ours over it would log the customer out. Ours is written only
   when the VPS has none, an unreadable one, or one that expires no later
   than ours (`ClaudeCredentials.newer_than`: the expiry moves forward with
   every refresh, and a customer who signs in again gives us a later one).
   Kept credentials still get the user as owner and mode 0600.
3. `.env` in the clone and `~/.claude/.credentials.json`: mode 0600, owned by
   the user, each a temp file renamed over the old one.
4. The commit the clone has checked out (its detached HEAD).
5. The health agent's env (`AGENT_ENV_PATH`: its heartbeat URL, this
   injection's credential, the Bot API), mode 0600 and root's, written the
   same way.
6. `systemctl reset-failed` (a unit that crash-looped before has used up its
   start limit, which counts manual starts too), `systemctl restart`, then
   `systemctl show`: a unit that crashed at once
   is told from one that runs. It must then stay up (same state, no
   automatic restart) and show it serves its bot; `core.cloud.rachel8_unit`'s
   `wait_serving` is that second look, made by a later job.
7. `systemctl enable --now` the agent's timer, once Rachel8 runs: its first
   heartbeat comes seconds later, after the job registered the credential.
   A timer that will not start (a VPS from before the agent) does not fail
   the injection: Rachel8 runs, and health falls back to SSH probes.

Errors are `SSHError`s: transient when the VPS could not be reached,
permanent when the VPS breaks the contract or Rachel8 will not run.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import paramiko

from core.cloud import vps_contract as vps
from core.cloud.cloudinit import env_line
from core.cloud.rachel8 import ClaudeCredentials, ConfigError, Rachel8Config
from core.cloud.rachel8 import parse_credentials_document as parse_credentials
from core.cloud.rachel8_unit import ServiceState, running_unit, show_command
from core.cloud.ssh import SecretsSFTP, SSHError, Target, connect, run, write_atomically

log = logging.getLogger(__name__)

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: A credentials document is a few hundred bytes; anything far larger is not one.
_MAX_CREDENTIALS_BYTES = 64 * 1024
_JOURNAL_LINES = 40
#: The most of a unit's output a failure's reason quotes.
_JOURNAL_CHARS = 600
#: `journalctl -o short`: `Mon DD HH:MM:SS host ident[pid]: message`.
_JOURNAL_LINE = re.compile(
    r"^\S+\s+\S+\s+\S+\s+\S+\s+(?P<ident>[^\s\[]+)\[(?P<pid>\d+)\]: ?(?P<message>.*)$"
)


@dataclass(frozen=True)
class AgentConfig:
    """What the VPS's health agent is given (`AGENT_ENV_PATH`).

    Attributes:
        heartbeat_url: where it POSTs its heartbeats.
        credential: its bearer credential, new with every injection (a secret:
            only its hash is kept by the control plane).
        telegram_api_url: the Bot API it asks about the bot (RACHEL_TELEGRAM_API_URL).
    """

    heartbeat_url: str
    credential: str
    telegram_api_url: str

    def __repr__(self) -> str:
        return f"AgentConfig(heartbeat_url={self.heartbeat_url!r})"

    def env(self) -> str:
        """The env file's text: shell-quoted KEY=VALUE lines, as cloud-init's."""
        return (
            env_line(vps.HEARTBEAT_URL_VAR, self.heartbeat_url)
            + env_line(vps.HEARTBEAT_CREDENTIAL_VAR, self.credential)
            + env_line(vps.TELEGRAM_API_VAR, self.telegram_api_url)
        )


@dataclass(frozen=True)
class Injected:
    """What an injection found and did.

    Attributes:
        commit: the Rachel8 commit the VPS has checked out.
        state: the unit right after the restart.
        kept_vps_credentials: the VPS's own credentials were newer, and kept.
        agent_error: None when the health agent's timer runs; else why not
            (systemctl's words).
    """

    commit: str
    state: ServiceState
    kept_vps_credentials: bool
    agent_error: str | None = None


def _owner(sftp: SecretsSFTP, host: str, layout: vps.Layout) -> tuple[int, int]:
    try:
        home = sftp.stat(layout.home)
    except FileNotFoundError as exc:
        raise SSHError(
            f"{host}: {layout.home} does not exist: the install did not create {layout.user}",
            code="vps_contract",
            transient=False,
        ) from exc
    if home.st_uid is None or home.st_gid is None or home.st_uid == 0:
        raise SSHError(
            f"{host}: {layout.home} is not owned by an unprivileged user",
            code="vps_contract",
            transient=False,
        )
    return home.st_uid, home.st_gid


def _read_small(sftp: SecretsSFTP, path: str) -> str | None:
    try:
        with sftp.open(path, "r") as handle:
            data = handle.read(_MAX_CREDENTIALS_BYTES + 1)
    except FileNotFoundError:
        return None
    if len(data) > _MAX_CREDENTIALS_BYTES:
        return ""  # not a credentials document: replaced like an unreadable one
    return bytes(data).decode("utf-8", "replace")


def _vps_credentials(sftp: SecretsSFTP, host: str, path: str) -> ClaudeCredentials | None:
    text = _read_small(sftp, path)
    if text is None:
        return None
    try:
        return parse_credentials(text, now_ms=None)
    except ConfigError as exc:
        log.warning("%s: the credentials on the VPS are unreadable (%s); replacing them", host, exc)
        return None


def _ensure_private_dir(sftp: SecretsSFTP, path: str, owner: tuple[int, int]) -> None:
    try:
        sftp.stat(path)
    except FileNotFoundError:
        sftp.mkdir(path, mode=vps.PRIVATE_DIR_MODE)
        sftp.chown(path, *owner)


def _checked_out(sftp: SecretsSFTP, host: str, layout: vps.Layout) -> str:
    head = (_read_small(sftp, layout.git_head_path) or "").strip()
    if not _COMMIT.fullmatch(head):
        raise SSHError(
            f"{host}: {layout.clone_dir} has no detached commit checked out ({head[:60]!r})",
            code="vps_contract",
            transient=False,
        )
    return head


def _write_files(
    sftp: SecretsSFTP,
    target: Target,
    config: Rachel8Config,
    agent: AgentConfig,
    layout: vps.Layout,
) -> tuple[str, bool]:
    owner = _owner(sftp, target.host, layout)
    commit = _checked_out(sftp, target.host, layout)
    on_vps = _vps_credentials(sftp, target.host, layout.credentials_path)
    keep = on_vps is not None and on_vps.newer_than(config.credentials)
    write_atomically(sftp, layout.env_path, config.env(layout), vps.SECRET_MODE, owner)
    if keep:
        # Kept, but still Rachel8's to read and no one else's: whoever touched the
        # file on the box may have left another owner or mode, which Rachel8 refuses.
        sftp.chmod(layout.credentials_path, vps.SECRET_MODE)
        sftp.chown(layout.credentials_path, *owner)
    else:
        _ensure_private_dir(sftp, layout.claude_dir, owner)
        write_atomically(
            sftp,
            layout.credentials_path,
            config.credentials.document(),
            vps.SECRET_MODE,
            owner,
        )
    write_atomically(sftp, vps.AGENT_ENV_PATH, agent.env(), vps.SECRET_MODE, (0, 0))
    return commit, keep


def _enable_agent(client: paramiko.SSHClient, host: str, timeout: float) -> str | None:
    """Start the agent's timer (and at every boot); None, or why it would not.

    Raises:
        SSHError: `ssh_unreachable` (transient) when the command could not run.
    """
    command = f"systemctl enable --now {vps.AGENT_TIMER_UNIT}"
    try:
        status, out, err = run(client, command, timeout)
    except (OSError, paramiko.SSHException) as exc:
        raise SSHError(
            f"{host}: running systemctl failed: {exc}", code="ssh_unreachable", transient=True
        ) from exc
    if status == 0:
        return None
    return f"`{command}` exited {status}: {err or out or 'no output'}"


def inject(
    target: Target,
    config: Rachel8Config,
    *,
    agent: AgentConfig,
    layout: vps.Layout,
    timeout: float = 30.0,
    unit: str = vps.SERVICE_UNIT,
) -> Injected:
    """Write `.env`, the credentials and the agent's env, restart Rachel8, start the agent.

    Rachel8 must not crash at once; the agent's timer failing to start is
    reported in `Injected.agent_error`, not raised.

    Raises:
        SSHError: transient when the VPS could not be reached or a write failed;
            permanent for a host key mismatch, a refused key, a VPS without the
            install the contract promises, or a Rachel8 that will not run.
    """
    client = connect(target, timeout)
    try:
        try:
            transport = client.get_transport()
            sftp = SecretsSFTP.from_transport(transport) if transport is not None else None
            if sftp is None:
                raise paramiko.SSHException("the SSH session closed before SFTP started")
            try:
                commit, kept = _write_files(sftp, target, config, agent, layout)
            finally:
                sftp.close()
        except FileNotFoundError as exc:
            raise SSHError(
                f"{target.host}: {exc.filename or 'a directory'} is missing: the install "
                f"did not leave {layout.clone_dir} as the contract says",
                code="vps_contract",
                transient=False,
            ) from exc
        except (OSError, paramiko.SSHException) as exc:
            raise SSHError(
                f"{target.host}: writing Rachel8's configuration failed: {exc}",
                code="sftp_failed",
                transient=True,
            ) from exc
        restart = f"systemctl reset-failed {unit}; systemctl restart {unit}"
        state = running_unit(
            client, target.host, unit, f"{restart} && {show_command(unit)}", timeout
        )
        agent_error = _enable_agent(client, target.host, timeout)
        return Injected(
            commit=commit, state=state, kept_vps_credentials=kept, agent_error=agent_error
        )
    finally:
        client.close()
