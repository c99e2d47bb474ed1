"""Rachel8's systemd unit as the control plane sees it over SSH: its state, its journal.

`systemctl show` (`SERVICE_PROPERTIES`) read into a `ServiceState`, the last
process's own output for a failure's reason, and the looks after an
injection:

- `check_service`: Rachel8 still runs and was not restarted automatically;
- `wait_serving`: the same, until Rachel8 shows it serves its bot: its
  current process logged `SERVING_MARK` (Rachel8's `onStart`, after grammY's
  `getMe` and `deleteWebhook` passed and before its first `getUpdates`: the
  bot answers from then on), or until a time limit.

Errors are `SSHError`s: transient when the VPS could not be reached,
`service_failed` when Rachel8 does not run.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass

import paramiko

from core.cloud import vps_contract as vps
from core.cloud.ssh import SSHError, Target, connect, run

_JOURNAL_LINES = 40
#: The most of a unit's output a failure's reason quotes.
_JOURNAL_CHARS = 600
#: `journalctl -o short`: `Mon DD HH:MM:SS host ident[pid]: message`.
_JOURNAL_LINE = re.compile(
    r"^\S+\s+\S+\s+\S+\s+\S+\s+(?P<ident>[^\s\[]+)\[(?P<pid>\d+)\]: ?(?P<message>.*)$"
)
#: What Rachel8 logs once it serves its bot (src/index.ts: `bot.start({onStart})`,
#: "Rachel8 is running. Listening for messages...").
SERVING_MARK = "Rachel8 is running. Listening for messages"
#: How often `wait_serving` looks again.
_LOOK_EVERY = 0.5


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
    main_pid: str = ""  # MainPID, when asked for ("0": no process)

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
        main_pid=values.get("MainPID", ""),
    )


def show_command(unit: str, *extra: str) -> str:
    """`systemctl show` of `SERVICE_PROPERTIES` and the `extra` properties (e.g. MainPID)."""
    properties = " ".join(f"-p {name}" for name in (*vps.SERVICE_PROPERTIES, *extra))
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


def running_unit(
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
        return running_unit(
            client, target.host, unit, show_command(unit), timeout, restarted_ok=False
        )
    finally:
        client.close()


def serving(journal: str, main_pid: str) -> bool:
    """Whether the process `main_pid` logged `SERVING_MARK` (`journalctl -o short` lines).

    Only the current process counts: a previous one (before the injection's
    restart) may have logged it too.
    """
    return any(
        m["pid"] == main_pid and SERVING_MARK in m["message"]
        for m in map(_JOURNAL_LINE.match, journal.splitlines())
        if m is not None
    )


def wait_serving(
    target: Target, *, within: float, timeout: float = 30.0, unit: str = vps.SERVICE_UNIT
) -> tuple[ServiceState, bool]:
    """Look until Rachel8 serves its bot, for at most `within` seconds, over one session.

    Returns:
        The unit's state and whether its current process logged `SERVING_MARK`
        (False: it still runs, unrestarted, but did not say so within the limit).

    Raises:
        SSHError: transient when the VPS could not be reached; `service_failed`
            when the unit is down, crash-looping or was restarted automatically.
    """
    deadline = time.monotonic() + within
    command = show_command(unit, "MainPID")
    journal = f"journalctl -u {unit} -n {_JOURNAL_LINES} -o short --no-pager"
    client = connect(target, timeout)
    try:
        while True:
            state = running_unit(client, target.host, unit, command, timeout, restarted_ok=False)
            try:
                status, out, _ = run(client, journal, timeout, limit=_JOURNAL_LINES * 1024)
            except (OSError, paramiko.SSHException) as exc:
                raise SSHError(
                    f"{target.host}: reading the journal failed: {exc}",
                    code="ssh_unreachable",
                    transient=True,
                ) from exc
            if status == 0 and serving(out, state.main_pid):
                return state, True
            if time.monotonic() >= deadline:
                return state, False
            time.sleep(min(_LOOK_EVERY, max(0.0, deadline - time.monotonic())))
    finally:
        client.close()
