"""The health agent on a simulated VPS: one run of `AGENT_SCRIPT_PATH`, as the script does it.

`core.cloud.vps_contract` ("The health agent") is the script's contract, and
this is what a run does with the VPS's root filesystem, systemd and network:

1. read `AGENT_ENV_PATH`, which must exist and be root's with mode 0600,
   and hold the heartbeat URL and credential (else the run fails, exit 1);
2. take as sequence the larger of the state file's (`AGENT_STATE_PATH`)
   plus one and the time in milliseconds;
3. look at Rachel8: `systemctl show rachel8.service` (`SERVICE_PROPERTIES`),
   the clone's `.git/HEAD`, the 409 lines of its journal since the last run
   (since the boot on a first run);
4. uptime since the boot, disk and memory figures (the server type's);
5. ask Telegram over HTTP, at `TELEGRAM_API_VAR` (the simulator's
   `/telegram`), with the token in Rachel8's `.env`: `getMe` (ok,
   unauthorized, error; unconfigured without a token or a URL) and, when
   that answered, `getWebhookInfo` (a webhook is set when its `url` is not
   empty);
6. write the state file, then POST the heartbeat (`core.domain.heartbeats`)
   with `Authorization: Bearer <credential>` over HTTP from the VPS's own
   address; a 2xx answer is success, anything else fails the run (exit 1:
   the unit's `Result=exit-code`).

Faults: `partition` cuts every request (each fails like a timeout),
`heartbeat_loss` only the POST. Every request is a fresh connection
(`sim.curl`), so a run costs a few file reads and three small requests.
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

#: Seconds each request may take (the script's urlopen timeout).
TIMEOUT = 10.0
IDENT = "rachel-cloud-agent"
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
GIB = 1024**3


class AgentFailure(Exception):
    """The run stops here, exit 1, with this message (as the script's SystemExit)."""


@dataclass(frozen=True)
class Hardware:
    """What the server type gives the box (GB as Hetzner counts them: GiB)."""

    disk_gb: float = 40
    memory_gb: float = 4


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
    hardware: Hardware
    agent_record: AgentRecord


def read_env(fs: RootFs) -> dict[str, str]:
    """The agent's env file, checked as the script checks it."""
    path = contract.AGENT_ENV_PATH
    real = fs.real(path, "/")
    if not real.is_file():
        raise AgentFailure(f"{IDENT}: cannot read {path}: No such file or directory")
    mode = stat.S_IMODE(real.stat().st_mode)
    uid, _gid = fs.owners.get(path)
    if mode != contract.SECRET_MODE or uid != 0:
        raise AgentFailure(
            f"{IDENT}: {path} must be root's with mode 0600 (it is {mode:04o}, uid {uid})"
        )
    env = parse_env_file(real.read_text(errors="replace"))
    for name in (contract.HEARTBEAT_URL_VAR, contract.HEARTBEAT_CREDENTIAL_VAR):
        if not env.get(name):
            raise AgentFailure(f"{IDENT}: {name} is not set in {path}")
    return env


def read_state(fs: RootFs) -> tuple[int, float | None]:
    """(last sequence, epoch seconds of the last run) from the state file; (0, None) if none."""
    real = fs.real(contract.AGENT_STATE_PATH, "/")
    try:
        state = json.loads(real.read_text())
        return int(state["seq"]), float(state["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, None


def next_sequence(last: int, now: float) -> int:
    """The larger of the last sequence plus one and the time in milliseconds."""
    return max(last + 1, int(now * 1000))


def _layout(fs: RootFs) -> contract.Layout:
    manifest = fs.real(contract.INSTALL_ENV_PATH, "/")
    values = parse_env_file(manifest.read_text(errors="replace")) if manifest.is_file() else {}
    return contract.Layout(values.get(contract.USER_VAR) or "rachel")


def service_report(systemd: Systemd) -> heartbeats.ServiceReport | None:
    """Rachel8's unit as `systemctl show` tells it (None: no such unit)."""
    props = systemd.properties(contract.SERVICE_UNIT)
    if props.get("LoadState") == "not-found":
        return None
    return heartbeats.ServiceReport(
        active=props["ActiveState"],
        sub=props["SubState"],
        restarts=int(props["NRestarts"]),
        result=props["Result"],
        exit_status=int(props["ExecMainStatus"]),
    )


def read_commit(fs: RootFs, layout: contract.Layout) -> str | None:
    """The clone's detached HEAD, when it is a commit."""
    real = fs.real(layout.git_head_path, "/")
    head = real.read_text(errors="replace").strip() if real.is_file() else ""
    return head if _COMMIT.fullmatch(head) else None


def conflicts_since(systemd: Systemd, since: float | None) -> int:
    """409 Conflict lines in Rachel8's journal after `since` (epoch; None: this boot)."""
    service = systemd.services.get(contract.SERVICE_UNIT)
    if service is None:
        return 0
    service.advance()
    clock = systemd.clock
    start = systemd.booted_at if since is None else clock.instant(since)
    return sum(
        1
        for entry in service.journal
        if entry.at > start and "409" in entry.message and "Conflict" in entry.message
    )


async def _telegram_call(host: AgentHost, url: str) -> tuple[int | None, Any]:
    if host.faults.partition:
        return None, None
    try:
        status, body = await curl.request(
            "GET",
            url,
            headers={},
            local_address=host.ip,
            timeout=TIMEOUT,
            ssl_context=ssl_context(),
        )
    except curl.CurlError:
        return None, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


async def telegram_report(
    host: AgentHost, api_url: str | None, token: str | None, conflicts: int
) -> heartbeats.TelegramReport:
    """What Telegram says of the bot (getMe, then getWebhookInfo), and the conflicts seen."""
    if not api_url or not token:
        return heartbeats.TelegramReport("unconfigured", None, conflicts)
    base = f"{api_url.rstrip('/')}/bot{token}"
    status, body = await _telegram_call(host, f"{base}/getMe")
    if status == 401:
        return heartbeats.TelegramReport("unauthorized", None, conflicts)
    if status != 200 or not isinstance(body, dict) or body.get("ok") is not True:
        return heartbeats.TelegramReport("error", None, conflicts)
    status, body = await _telegram_call(host, f"{base}/getWebhookInfo")
    webhook: bool | None = None
    if status == 200 and isinstance(body, dict) and isinstance(body.get("result"), dict):
        webhook = bool(body["result"].get("url"))
    return heartbeats.TelegramReport("ok", webhook, conflicts)


def _figures(host: AgentHost, service: heartbeats.ServiceReport | None) -> dict[str, int]:
    disk = int(host.hardware.disk_gb * GIB)
    memory = int(host.hardware.memory_gb * GIB)
    # An Ubuntu image with Rachel8's dependencies; Rachel8 and Claude Code take memory.
    used_memory = 0.28 if service is not None and service.running else 0.12
    return {
        "disk_free_bytes": max(0, disk - int(6.5 * GIB)),
        "disk_total_bytes": disk,
        "memory_available_bytes": int(memory * (1 - used_memory)),
        "memory_total_bytes": memory,
    }


async def _post(host: AgentHost, url: str, credential: str, body: bytes) -> int:
    if host.faults.partition or host.faults.heartbeat_loss:
        raise AgentFailure(f"{IDENT}: POST {url}: timed out")
    try:
        return await curl.post_json(
            url,
            body,
            headers={"Authorization": f"Bearer {credential}"},
            local_address=host.ip,
            timeout=TIMEOUT,
            ssl_context=ssl_context(),
        )
    except curl.CurlError as exc:
        raise AgentFailure(f"{IDENT}: POST {url}: {exc}") from exc


async def heartbeat(host: AgentHost) -> tuple[int, str]:
    """Build and send one heartbeat: (HTTP status, the URL it went to)."""
    fs, systemd = host.fs, host.systemd
    env = read_env(fs)
    last_seq, last_at = read_state(fs)
    now = time.time()
    seq = next_sequence(last_seq, now)
    layout = _layout(fs)
    service = service_report(systemd)
    dotenv = fs.real(layout.env_path, "/")
    token = (
        parse_env_file(dotenv.read_text(errors="replace")).get(contract.ENV_BOT_TOKEN)
        if dotenv.is_file()
        else None
    )
    conflicts = conflicts_since(systemd, last_at)
    telegram = await telegram_report(host, env.get(contract.TELEGRAM_API_VAR), token, conflicts)
    report = heartbeats.Heartbeat(
        seq=seq,
        sent_at=now,
        agent=contract.AGENT_VERSION,
        service=service,
        commit=read_commit(fs, layout),
        uptime_seconds=round(systemd.uptime(), 3),
        telegram=telegram,
        **_figures(host, service),
    )
    state = json.dumps({"seq": seq, "at": now}).encode()
    fs.write(contract.AGENT_STATE_PATH, state, contract.SECRET_MODE)
    host.agent_record.last_seq = seq
    url = env[contract.HEARTBEAT_URL_VAR]
    status = await _post(
        host, url, env[contract.HEARTBEAT_CREDENTIAL_VAR], heartbeats.encode(report)
    )
    return status, url


async def run(host: AgentHost) -> tuple[int, tuple[str, ...]]:
    """One run of the agent's service: (exit status, what it printed)."""
    record = host.agent_record
    record.runs += 1
    try:
        status, url = await heartbeat(host)
    except AgentFailure as exc:
        record.last_exit, record.last_error = 1, str(exc)
        return 1, (str(exc),)
    record.last_status = status
    if not 200 <= status < 300:
        message = f"{IDENT}: POST {url}: answered {status}"
        record.last_exit, record.last_error = 1, message
        return 1, (message,)
    record.sent += 1
    record.last_exit, record.last_error = 0, None
    return 0, ()
