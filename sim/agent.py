"""The health agent on a simulated VPS: one run of `AGENT_SCRIPT_PATH`, as the script does it.

`core.cloud.vps_contract` ("The health agent") is the contract and
`core/cloud/vps_scripts/agent.py` the script; this is what a run of it does
with the VPS's root filesystem, systemd and network:

1. read `AGENT_ENV_PATH`: without an http(s) heartbeat URL and a
   credential the run fails (exit 1). The simulator also holds the box to
   the contract's mode for that file, root's and 0600: another one fails the
   run too, so that a control plane writing it otherwise fails a test;
2. take as sequence the larger of the state file's (`AGENT_STATE_PATH`)
   plus one and the time in milliseconds, and save it before sending (with
   the last run's time: the 409 lines are counted from it until a heartbeat
   is taken; without a state, from a minute ago);
3. look at Rachel8: `systemctl show rachel8.service` (`SERVICE_PROPERTIES`),
   the clone's `.git/HEAD`, the lines of its journal since then (or since its
   process last started, when that is earlier) matching `409 Conflict` but
   for a webhook's;
4. uptime, disk and memory (`sim.hardware`, as `/proc` and `statvfs` say);
5. ask Telegram over HTTP, at `TELEGRAM_API_VAR` (the simulator's
   `/telegram`), with the token in Rachel8's `.env`: `getMe` (ok;
   unauthorized on a 401; error otherwise; unconfigured without a token or
   a URL) and then `getWebhookInfo` (a webhook is set when its `url` is not
   empty);
6. POST the heartbeat (`core.domain.heartbeats`) with `Authorization: Bearer
   <credential>` over HTTP from the VPS's own address; a 2xx answer is
   success (the state then counts from now), anything else fails the run
   (exit 1: the unit's `Result=exit-code`) with one line in the journal.

Faults: `partition` cuts every request, `heartbeat_loss` only the POST;
either fails at once, as after the script's timeout. Times the control
plane sees (`sent_at`, the sequence) are real epoch seconds; uptime is the
box's scaled clock (`RACHEL_SIM_TIME_SCALE`). Every request is a fresh
connection (`sim.curl`): a run costs a few file reads and three small requests.
"""

from __future__ import annotations

import json
import re
import stat
import time
from dataclasses import dataclass
from typing import Any, Protocol

from core.cloud import vps_contract as contract
from core.domain import heartbeats
from sim import curl
from sim.bootstrap import ssl_context
from sim.cloudconfig import parse_env_file
from sim.faults import VpsFaults
from sim.rootfs import RootFs
from sim.systemd import Systemd

#: Seconds a Telegram request may take (the script's), and the POST's.
TIMEOUT = 5.0
POST_TIMEOUT = 10.0
IDENT = "rachel-cloud agent"
#: The script's pattern: grammY's "(409: Conflict: terminated by other getUpdates request",
#: but not a webhook's 409s (getWebhookInfo tells of the webhook).
CONFLICT = re.compile(r"\b409\W+Conflict\b(?!\W+(?:terminated by setW|can't use getU))")
#: Without a state file, the 409 lines of the last minute are reported.
FIRST_LOOK_BACK = 60.0
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


class AgentFailure(Exception):
    """The run stops here, exit 1, with this line on stderr."""


@dataclass
class AgentRecord:
    """What the agent did lately, for `/_sim/vps` and tests."""

    runs: int = 0
    sent: int = 0
    last_seq: int | None = None
    last_status: int | None = None
    last_exit: int | None = None
    last_error: str | None = None


class AgentHost(Protocol):
    """The VPS a run happens on."""

    fs: RootFs
    systemd: Systemd
    ip: str
    faults: VpsFaults
    agent_record: AgentRecord


def read_env(fs: RootFs) -> dict[str, str]:
    """The agent's env file, with its URL and credential (and the contract's mode)."""
    path = contract.AGENT_ENV_PATH
    real = fs.real(path, "/")
    env = parse_env_file(real.read_text(errors="replace")) if real.is_file() else {}
    url, credential = (
        env.get(contract.HEARTBEAT_URL_VAR, ""),
        env.get(contract.HEARTBEAT_CREDENTIAL_VAR, ""),
    )
    if not url.startswith(("https://", "http://")) or not credential:
        raise AgentFailure(f"{IDENT}: no heartbeat URL or credential in {path}")
    mode = stat.S_IMODE(real.stat().st_mode)
    uid, _gid = fs.owners.get(path)
    if mode != contract.SECRET_MODE or uid != 0:
        raise AgentFailure(
            f"{IDENT}: {path} must be root's with mode 0600 (it is {mode:04o}, uid {uid}; "
            "the simulator holds the box to the contract)"
        )
    return env


def read_state(fs: RootFs) -> tuple[int, float | None]:
    """(last sequence, epoch seconds the 409 lines count from) from the state file."""
    real = fs.real(contract.AGENT_STATE_PATH, "/")
    try:
        state = json.loads(real.read_text())
        return int(state["seq"]), float(state["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, None


def save_state(fs: RootFs, seq: int, at: float) -> None:
    """The state file, written as the script writes it (root's; the umask's 0644)."""
    fs.write(contract.AGENT_STATE_PATH, json.dumps({"seq": seq, "at": at}).encode(), 0o644)


def next_sequence(last: int, now: float) -> int:
    """The larger of the last sequence plus one and the time in milliseconds."""
    return max(last + 1, int(now * 1000))


def _layout(fs: RootFs) -> contract.Layout:
    manifest = fs.real(contract.INSTALL_ENV_PATH, "/")
    values = parse_env_file(manifest.read_text(errors="replace")) if manifest.is_file() else {}
    return contract.Layout(values.get(contract.USER_VAR) or "rachel")


def service_report(systemd: Systemd) -> heartbeats.ServiceReport | None:
    """Rachel8's unit as `systemctl show` tells it (an unknown unit shows as inactive)."""
    props = systemd.properties(contract.SERVICE_UNIT)
    try:
        return heartbeats.ServiceReport(
            active=props["ActiveState"],
            sub=props["SubState"],
            restarts=int(props["NRestarts"] or 0),
            result=props["Result"],
            exit_status=int(props["ExecMainStatus"] or 0),
        )
    except (KeyError, ValueError):
        return None


def read_commit(fs: RootFs, layout: contract.Layout) -> str | None:
    """The clone's detached HEAD, when it is a commit."""
    real = fs.real(layout.git_head_path, "/")
    head = real.read_text(errors="replace").strip() if real.is_file() else ""
    return head if _COMMIT.fullmatch(head) else None


def conflicts_since(systemd: Systemd, since: float) -> int:
    """409 Conflict lines in Rachel8's journal from `since` (real epoch seconds) on, or
    from its process's last start when that is earlier (`ExecMainStartTimestamp`, as
    the script asks for it): one that exited on a 409 shows it until it starts again."""
    with systemd.lock:
        service = systemd.services.get(contract.SERVICE_UNIT)
        if service is None:
            return 0
        service.advance()
        entries = list(service.journal)
        started = service.exec_main_start_at
    clock = systemd.clock
    if started is not None:
        since = min(since, clock.epoch(started))
    return sum(
        len(CONFLICT.findall(entry.message)) for entry in entries if clock.epoch(entry.at) >= since
    )


async def _ask(host: AgentHost, url: str) -> Any:
    """A Bot API call's `result` (raises `_Refused` with the status, or `AgentFailure`)."""
    if host.faults.partition:
        raise AgentFailure("timed out")
    try:
        status, body = await curl.request(
            "GET",
            url,
            headers={},
            local_address=host.ip,
            timeout=TIMEOUT,
            ssl_context=ssl_context(),
        )
    except curl.CurlError as exc:
        raise AgentFailure(str(exc)) from exc
    if status != 200:
        raise _Refused(status)
    try:
        return json.loads(body)["result"]
    except (ValueError, KeyError, TypeError) as exc:
        raise AgentFailure("not a Bot API answer") from exc


class _Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


async def telegram_report(
    host: AgentHost, api_url: str, token: str | None, conflicts: int
) -> heartbeats.TelegramReport:
    """getMe, then getWebhookInfo, as the script asks them; and the conflicts counted."""
    if not token or not api_url:
        return heartbeats.TelegramReport("unconfigured", None, conflicts)
    base = f"{api_url.rstrip('/')}/bot{token}"
    try:
        await _ask(host, f"{base}/getMe")
    except _Refused as refused:
        if refused.status == 401:
            return heartbeats.TelegramReport("unauthorized", None, conflicts)
        return heartbeats.TelegramReport("error", None, conflicts)
    except AgentFailure:
        return heartbeats.TelegramReport("error", None, conflicts)
    try:
        info = await _ask(host, f"{base}/getWebhookInfo")
        webhook: bool | None = bool(info["url"])
    except (_Refused, AgentFailure, KeyError, TypeError):
        webhook = None
    return heartbeats.TelegramReport("ok", webhook, conflicts)


async def _post(host: AgentHost, url: str, credential: str, body: bytes) -> int:
    if host.faults.partition or host.faults.heartbeat_loss:
        raise AgentFailure("TimeoutError('timed out')")
    try:
        return await curl.post_json(
            url,
            body,
            headers={"Authorization": f"Bearer {credential}"},
            local_address=host.ip,
            timeout=POST_TIMEOUT,
            ssl_context=ssl_context(),
        )
    except curl.CurlError as exc:
        raise AgentFailure(f"URLError({exc!s})") from exc


async def heartbeat(host: AgentHost) -> None:
    """Build and send one heartbeat (raises `AgentFailure` when it is not taken)."""
    fs, systemd = host.fs, host.systemd
    env = read_env(fs)
    now = time.time()
    last_seq, since = read_state(fs)
    since = now - FIRST_LOOK_BACK if since is None else since
    seq = next_sequence(last_seq, now)
    save_state(fs, seq, since)  # before sending: a sequence is never sent twice
    host.agent_record.last_seq = seq
    layout = _layout(fs)
    dotenv = fs.real(layout.env_path, "/")
    values = parse_env_file(dotenv.read_text(errors="replace")) if dotenv.is_file() else {}
    conflicts = conflicts_since(systemd, since)
    telegram = await telegram_report(
        host, env.get(contract.TELEGRAM_API_VAR, ""), values.get(contract.ENV_BOT_TOKEN), conflicts
    )
    disk_free, disk_total = systemd.hardware.disk()
    memory_available, memory_total = systemd.memory()
    report = heartbeats.Heartbeat(
        seq=seq,
        sent_at=now,
        agent=contract.AGENT_VERSION,
        service=service_report(systemd),
        commit=read_commit(fs, layout),
        uptime_seconds=round(systemd.uptime(), 2),
        disk_free_bytes=disk_free,
        disk_total_bytes=disk_total,
        memory_available_bytes=memory_available,
        memory_total_bytes=memory_total,
        telegram=telegram,
    )
    credential = env[contract.HEARTBEAT_CREDENTIAL_VAR]
    try:
        status = await _post(
            host, env[contract.HEARTBEAT_URL_VAR], credential, heartbeats.encode(report)
        )
    except AgentFailure as exc:
        raise AgentFailure(f"{IDENT}: heartbeat {seq} not taken: {exc}") from exc
    host.agent_record.last_status = status
    if not 200 <= status < 300:
        raise AgentFailure(f"{IDENT}: heartbeat {seq} not taken: answered {status}")
    save_state(fs, seq, now)  # the 409 lines until now were reported


async def run(host: AgentHost) -> tuple[int, tuple[str, ...]]:
    """One run of the agent's service: (exit status, what it printed)."""
    record = host.agent_record
    record.runs += 1
    try:
        await heartbeat(host)
    except AgentFailure as exc:
        record.last_exit, record.last_error = 1, str(exc)
        return 1, (str(exc),)
    record.sent += 1
    record.last_exit, record.last_error = 0, None
    return 0, ()
