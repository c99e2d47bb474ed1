"""What the control plane does on a running VPS over SSH, after it is ready.

The health probe (a server whose heartbeats stopped: is the VPS reachable, is
Rachel8 down, or only the agent?), the repairs (restart Rachel8, restart the
agent), and what operators and customers ask for (the journal's tail, a
diagnosis). Every connection checks the pinned host key (`core.cloud.ssh`);
every output is redacted before it leaves here, and bounded.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import paramiko

from core.cloud import vps_contract as vps
from core.cloud.rachel8_unit import ServiceState, parse_show, show_command
from core.cloud.ssh import SSHError, Target, connect, run
from core.security.redaction import MASK, redact

#: The most journal lines one request returns.
MAX_LOG_LINES = 500
#: Characters of output kept from a command: enough for MAX_LOG_LINES long lines.
_MAX_OUTPUT = 200_000
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: `df -B1 --output=avail,size /`: a header, then the two numbers.
_DF = "df -B1 --output=avail,size /"


@dataclass(frozen=True)
class Probe:
    """What an SSH look at a server whose heartbeats stopped found.

    Attributes:
        reachable: an SSH session opened, with the pinned host key.
        service: the Rachel8 unit's state (None when unreachable or unreadable).
        agent_timer_active: whether the agent's timer is active (None when unknown).
        agent_result: the agent service's last Result (`success`, `exit-code`...).
        error: why the VPS was not reachable, or what could not be read.
    """

    reachable: bool
    service: ServiceState | None = None
    agent_timer_active: bool | None = None
    agent_result: str | None = None
    error: str | None = None

    def describe(self) -> str:
        """One line for events and logs."""
        if not self.reachable:
            return f"unreachable over SSH ({self.error})"
        service = self.service.describe() if self.service else f"unreadable ({self.error})"
        timer = {True: "active", False: "inactive", None: "unknown"}[self.agent_timer_active]
        return f"Rachel8 {service}; agent timer {timer}, last run {self.agent_result or 'unknown'}"


@dataclass(frozen=True)
class Diagnosis:
    """What `rachel-cloud server diagnose` shows: the box as an operator would check it.

    Attributes:
        service: the Rachel8 unit's state.
        journal: its last journal lines (redacted).
        disk_free_bytes, disk_total_bytes: of the root filesystem.
        memory_available_bytes, memory_total_bytes: from /proc/meminfo.
        uptime_seconds: since the VPS booted.
        commit: the Rachel8 commit checked out (None when unreadable).
        versions: what the install recorded (`bun`, `claude_code`).
        agent_timer: the agent timer's ActiveState.
        problems: what could not be read, one line each.
    """

    service: ServiceState | None
    journal: list[str]
    disk_free_bytes: int | None
    disk_total_bytes: int | None
    memory_available_bytes: int | None
    memory_total_bytes: int | None
    uptime_seconds: float | None
    commit: str | None
    versions: dict[str, str]
    agent_timer: str | None
    problems: list[str] = field(default_factory=list)


def _session(target: Target, timeout: float) -> paramiko.SSHClient:
    return connect(target, timeout)


def _unreachable(target: Target, exc: Exception) -> SSHError:
    return SSHError(
        f"{target.host}: the command could not run: {exc}", code="ssh_unreachable", transient=True
    )


def _property(text: str, name: str) -> str | None:
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key == name:
            return value
    return None


def probe(target: Target, timeout: float) -> Probe:
    """Look at a silent server: reachable? Rachel8 running? the agent's timer?

    An unreachable VPS (refused, timed out, host key changed, our key refused) is
    a finding, not an error: the health decision needs it.
    """
    try:
        client = _session(target, timeout)
    except SSHError as exc:
        return Probe(reachable=False, error=f"{exc.code}: {exc.message}")
    try:
        status, out, err = run(client, show_command(vps.SERVICE_UNIT, "MainPID"), timeout)
        try:
            service = parse_show(out) if status == 0 else None
            problem = None if status == 0 else f"systemctl show exited {status}: {err or out}"
        except ValueError as exc:
            service, problem = None, str(exc)
        command = (
            f"systemctl show {vps.AGENT_TIMER_UNIT} -p ActiveState; "
            f"systemctl show {vps.AGENT_SERVICE_UNIT} -p Result"
        )
        _, agent_out, _ = run(client, command, timeout)
        timer = _property(agent_out, "ActiveState")
        return Probe(
            reachable=True,
            service=service,
            agent_timer_active=None if timer is None else timer == "active",
            agent_result=_property(agent_out, "Result"),
            error=problem,
        )
    except (OSError, paramiko.SSHException, EOFError) as exc:
        # The session opened, then died: as good as unreachable for a decision.
        return Probe(reachable=False, error=f"the SSH session failed: {exc}")
    finally:
        client.close()


def _run_checked(target: Target, command: str, timeout: float, what: str) -> str:
    """Run `command` in a session of its own; its output, or an SSHError naming `what`."""
    client = _session(target, timeout)
    try:
        status, out, err = run(client, command, timeout)
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise _unreachable(target, exc) from exc
    finally:
        client.close()
    if status != 0:
        raise SSHError(
            f"{target.host}: {what} failed (exit {status}): {err or out}",
            code="service_failed",
            transient=False,
        )
    return out


#: Starts the agent's service once, now, without waiting for it (a oneshot already
#: running is not started twice, as systemd merges the jobs).
_HEARTBEAT_NOW = f"systemctl start --no-block {vps.AGENT_SERVICE_UNIT}"


def restart_service(target: Target, timeout: float) -> ServiceState:
    """Restart Rachel8 (after clearing a used-up start limit) and report its state.

    The state is what systemd says right after the restart: whether it stays up
    is for the next heartbeat to tell (`ask_heartbeat`).

    Raises:
        SSHError: `ssh_unreachable` (transient), `host_key_mismatch`, `ssh_auth_failed`,
            `service_failed` (systemctl failed), `vps_contract` (unreadable state).
    """
    unit = vps.SERVICE_UNIT
    command = (
        f"systemctl reset-failed {unit}; systemctl restart {unit}; {show_command(unit, 'MainPID')}"
    )
    out = _run_checked(target, command, timeout, f"restarting {unit}")
    try:
        return parse_show(out)
    except ValueError as exc:
        raise SSHError(f"{target.host}: {exc}", code="vps_contract", transient=False) from exc


def ask_heartbeat(target: Target, timeout: float) -> None:
    """Run the agent once now, not at its timer's next tick (its timer then counts its
    period from this run): the heartbeat that tells whether a repair worked.

    Raises:
        SSHError: the VPS could not be reached, or systemctl refused (no agent unit).
    """
    _run_checked(target, _HEARTBEAT_NOW, timeout, f"starting {vps.AGENT_SERVICE_UNIT}")


def restart_agent(target: Target, timeout: float) -> None:
    """Re-enable and restart the agent's timer (its heartbeats stopped, Rachel8 runs),
    and run the agent once now (`ask_heartbeat`: whether it talks again tells at once).

    Raises:
        SSHError: the VPS could not be reached, or systemctl refused.
    """
    timer = vps.AGENT_TIMER_UNIT
    command = (
        f"systemctl reset-failed {vps.AGENT_SERVICE_UNIT}; systemctl enable --now {timer} "
        f"&& systemctl restart {timer} && {_HEARTBEAT_NOW}"
    )
    _run_checked(target, command, timeout, f"restarting {timer}")


def _redacted_lines(text: str, extra_secrets: Sequence[str]) -> list[str]:
    text = redact(text)
    for secret in extra_secrets:
        if secret:
            text = text.replace(secret, MASK)
    return text.splitlines()


def _journal(
    client: paramiko.SSHClient, lines: int, timeout: float, extra_secrets: Sequence[str]
) -> list[str]:
    command = f"journalctl -u {vps.SERVICE_UNIT} -n {lines} -o short-iso --no-pager"
    status, out, err = run(client, command, timeout, limit=_MAX_OUTPUT)
    if status != 0:
        raise SSHError(f"journalctl exited {status}: {err or out}", code="service_failed")
    return _redacted_lines(out, extra_secrets)[-lines:]


def journal_tail(
    target: Target, lines: int, timeout: float, *, extra_secrets: Sequence[str] = ()
) -> list[str]:
    """The last `lines` lines of Rachel8's journal, redacted.

    Args:
        target: the VPS.
        lines: how many, 1 to MAX_LOG_LINES.
        timeout: seconds for the connection and the command.
        extra_secrets: values to mask besides the shapes `redact` knows (the
            customer's own keys, which have no recognisable shape).

    Raises:
        ValueError: `lines` is out of range.
        SSHError: the VPS could not be reached, or journalctl failed.
    """
    if not 1 <= lines <= MAX_LOG_LINES:
        raise ValueError(f"lines must be between 1 and {MAX_LOG_LINES}, got {lines}")
    client = _session(target, timeout)
    try:
        return _journal(client, lines, timeout, extra_secrets)
    except SSHError as exc:
        raise SSHError(f"{target.host}: {exc.message}", code=exc.code, transient=False) from exc
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise _unreachable(target, exc) from exc
    finally:
        client.close()


def _meminfo(text: str) -> tuple[int | None, int | None]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name.strip()] = int(parts[0]) * 1024  # kB
    return values.get("MemAvailable"), values.get("MemTotal")


def _df(text: str) -> tuple[int | None, int | None]:
    rows = [line.split() for line in text.splitlines()[1:] if line.strip()]
    if rows and len(rows[0]) == 2 and all(part.isdigit() for part in rows[0]):
        return int(rows[0][0]), int(rows[0][1])
    return None, None


def _versions(text: str) -> dict[str, str]:
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        found = json.loads(text).get("versions") or {}
        return {str(k): str(v) for k, v in found.items() if isinstance(v, str)}
    return {}


def diagnose(
    target: Target, layout: vps.Layout, timeout: float, *, journal_lines: int = 40
) -> Diagnosis:
    """Unit state, journal tail, disk, memory, uptime, commit and installed versions.

    Each part is read on its own, so one that fails (a missing file on a
    half-installed box) is reported in `problems` and does not hide the rest.

    Raises:
        SSHError: the VPS could not be reached at all.
    """
    client = _session(target, timeout)
    problems: list[str] = []

    def read(what: str, command: str) -> str:
        status, out, err = run(client, command, timeout, limit=_MAX_OUTPUT)
        if status != 0:
            problems.append(f"{what}: `{command}` exited {status}: {err or out}")
            return ""
        return out

    try:
        show = read("Rachel8 unit", show_command(vps.SERVICE_UNIT, "MainPID"))
        try:
            service: ServiceState | None = parse_show(show) if show else None
        except ValueError as exc:
            service = None
            problems.append(f"Rachel8 unit: {exc}")
        try:
            journal = _journal(client, journal_lines, timeout, ())
        except SSHError as exc:
            journal = []
            problems.append(f"journal: {exc.message}")
        free, total = _df(read("disk", _DF))
        available, memory = _meminfo(read("memory", "cat /proc/meminfo"))
        uptime_text = read("uptime", "cat /proc/uptime").split()
        head = read("commit", f"cat {layout.git_head_path}").strip()
        versions = _versions(read("versions", f"cat {vps.INSTALL_RESULT_PATH}"))
        timer = _property(
            read("agent", f"systemctl show {vps.AGENT_TIMER_UNIT} -p ActiveState"), "ActiveState"
        )
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise _unreachable(target, exc) from exc
    finally:
        client.close()
    uptime = None
    with contextlib.suppress(ValueError, IndexError):
        uptime = float(uptime_text[0])
    return Diagnosis(
        service=service,
        journal=journal,
        disk_free_bytes=free,
        disk_total_bytes=total,
        memory_available_bytes=available,
        memory_total_bytes=memory,
        uptime_seconds=uptime,
        commit=head if _COMMIT.fullmatch(head) else None,
        versions=versions,
        agent_timer=timer,
        problems=problems,
    )
