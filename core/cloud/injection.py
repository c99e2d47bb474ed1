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
   automatic restart) over the settle period; `check_service` is that second
   look, made by a later job so that no worker waits.
7. `systemctl enable --now` the agent's timer, once Rachel8 runs: its first
   heartbeat comes seconds later, after the job registered the credential.
   A timer that will not start (a VPS from before the agent) does not fail
   the injection: Rachel8 runs, and health falls back to SSH probes.

Errors are `SSHError`s: transient when the VPS could not be reached,
permanent when the VPS breaks the contract or Rachel8 will not run.
"""

from __future__ import annotations

import contextlib
import logging
import re
from dataclasses import dataclass

import paramiko

from core.cloud import vps_contract as vps
from core.cloud.cloudinit import env_line
from core.cloud.rachel8 import ClaudeCredentials, ConfigError, Rachel8Config
from core.cloud.rachel8 import parse_credentials_document as parse_credentials
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
class ServiceState:
    """The unit as `systemctl show` reports it.

    Attributes:
        active: ActiveState (`active`, `activating`, `failed`, `inactive`...).
        sub: SubState (`running`, `auto-restart`, `dead`, `failed`...).
        restarts: NRestarts, automatic restarts since the unit was last started by hand.
        result: Result (`success`, `exit-code`, `start-limit-hit`...).
        exit_status: ExecMainStatus, the main process's last exit status.
    """

    active: str
    sub: str
    restarts: int
    result: str
    exit_status: int

    @property
    def running(self) -> bool:
        """Up, and not between two automatic restarts."""
        return self.active == "active" and self.sub == "running" and self.result == "success"

    def describe(self) -> str:
        """`failed (exit-code, status 1, 2 restarts)`: for events and logs."""
        return (
            f"{self.active}/{self.sub} ({self.result}, exit status {self.exit_status}, "
            f"{self.restarts} automatic restart{'s' if self.restarts != 1 else ''})"
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


def parse_show(text: str) -> ServiceState:
    """`systemctl show -p ...` output (Key=value lines) as a `ServiceState`.

    Raises:
        ValueError: a property is missing or not what systemd prints.
    """
    values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    missing = [name for name in vps.SERVICE_PROPERTIES if name not in values]
    if missing:
        raise ValueError(f"systemctl show did not report {', '.join(missing)}")
    return ServiceState(
        active=values["ActiveState"],
        sub=values["SubState"],
        restarts=int(values["NRestarts"] or 0),
        result=values["Result"],
        exit_status=int(values["ExecMainStatus"] or 0),
    )


def _show_command(unit: str) -> str:
    properties = " ".join(f"-p {name}" for name in vps.SERVICE_PROPERTIES)
    return f"systemctl show {unit} {properties}"


def _service_state(
    client: paramiko.SSHClient, host: str, command: str, timeout: float
) -> ServiceState:
    status, out, err = run(client, command, timeout)
    if status != 0:
        raise SSHError(
            f"{host}: `{command.split(' &&', maxsplit=1)[0]}` exited {status}: {err or out}",
            code="service_failed",
            transient=False,
        )
    try:
        return parse_show(out)
    except ValueError as exc:
        raise SSHError(f"{host}: {exc}", code="vps_contract", transient=False) from exc


def _journal(client: paramiko.SSHClient, unit: str, timeout: float) -> str:
    """The unit's last journal lines (redacted by `run`), for the failure's reason.

    Whole: `last_output` looks for what Rachel8 printed before systemd's own lines
    about its exits and restarts, which alone can fill `run`'s default bound.
    """
    command = f"journalctl -u {unit} -n {_JOURNAL_LINES} --no-pager"
    with contextlib.suppress(OSError, paramiko.SSHException):
        _, out, _ = run(client, command, timeout, limit=_JOURNAL_LINES * 1024)
        return out
    return ""


def last_output(journal: str) -> str:
    """What the unit's last process printed (`journalctl -o short` lines), on one line.

    Why Rachel8 exited is in its own lines ("Invalid environment configuration:
    ..."), which systemd's own lines about the exit and the restarts follow and,
    in a plain tail, push out. Those of the last process that is not systemd
    (its pid; `(bun)` for a failure before the exec) are kept; a journal in
    another format is given as its tail.
    """
    entries = [m for m in map(_JOURNAL_LINE.match, journal.splitlines()) if m is not None]
    own = [m for m in entries if m["ident"] != "systemd"]
    if not own:
        return " | ".join(journal.strip().splitlines())[-_JOURNAL_CHARS:]
    pid = own[-1]["pid"]
    text = " | ".join(m["message"].strip() for m in own if m["pid"] == pid)
    return text[-_JOURNAL_CHARS:]


def _not_running(host: str, unit: str, state: ServiceState, journal: str) -> SSHError:
    tail = f"; its last output: {last_output(journal)}" if journal.strip() else ""
    return SSHError(
        f"{host}: Rachel8 is not running: {unit} is {state.describe()}{tail}",
        code="service_failed",
        transient=False,
    )


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


def _running_unit(
    client: paramiko.SSHClient,
    host: str,
    unit: str,
    command: str,
    timeout: float,
    *,
    restarted_ok: bool = True,
) -> ServiceState:
    """Run `command` (ending in `systemctl show`) and insist the unit runs.

    `restarted_ok` False also refuses a unit systemd restarted automatically
    since it was last started by hand: it crashed in between.

    Raises:
        SSHError: `service_failed` with the unit's state and last output, or
            `ssh_unreachable` (transient) when the command could not run.
    """
    try:
        state = _service_state(client, host, command, timeout)
        if not state.running or (state.restarts and not restarted_ok):
            raise _not_running(host, unit, state, _journal(client, unit, timeout))
    except (OSError, paramiko.SSHException) as exc:
        raise SSHError(
            f"{host}: running systemctl failed: {exc}", code="ssh_unreachable", transient=True
        ) from exc
    return state


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
        state = _running_unit(
            client, target.host, unit, f"{restart} && {_show_command(unit)}", timeout
        )
        agent_error = _enable_agent(client, target.host, timeout)
        return Injected(
            commit=commit, state=state, kept_vps_credentials=kept, agent_error=agent_error
        )
    finally:
        client.close()


def check_service(
    target: Target, *, timeout: float = 30.0, unit: str = vps.SERVICE_UNIT
) -> ServiceState:
    """The settle check: Rachel8 still runs and was not restarted since the injection.

    Raises:
        SSHError: transient when the VPS could not be reached; `service_failed`
            when the unit is down, crash-looping or was restarted automatically.
    """
    client = connect(target, timeout)
    try:
        return _running_unit(
            client, target.host, unit, _show_command(unit), timeout, restarted_ok=False
        )
    finally:
        client.close()
