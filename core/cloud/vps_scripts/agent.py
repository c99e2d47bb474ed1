#!/usr/bin/python3
"""rachel-cloud agent: POST one heartbeat (vps_contract, "The health agent"); exit 1 if refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

# <shared>
from core.cloud.vps_scripts.common import read_env

# </shared>

# <constants>
ENV_PATH = "/etc/rachel-cloud/agent.env"
STATE_PATH = "/var/lib/rachel-cloud/agent.json"
URL_VAR = "RACHEL_HEARTBEAT_URL"
CREDENTIAL_VAR = "RACHEL_HEARTBEAT_CREDENTIAL"
TELEGRAM_VAR = "RACHEL_TELEGRAM_API_URL"
VERSION = "1"
UNIT = "rachel8.service"
PROPERTIES = ["ActiveState", "SubState", "NRestarts", "Result", "ExecMainStatus"]
BOT_ENV = "/home/rachel/rachel8/.env"
TOKEN_KEY = "TELEGRAM_BOT_TOKEN"  # noqa: S105 - a key name
HEAD_PATH = "/home/rachel/rachel8/.git/HEAD"
PROC = "/proc"
DISK = "/"
# </constants>

TIMEOUT = 5
# grammY: "Call to 'getUpdates' failed! (409: Conflict: terminated by other getUpdates request".
# Not a webhook's 409s ("terminated by setWebhook", "can't use getUpdates"): webhook_set.
CONFLICT = re.compile(r"\b409\W+Conflict\b(?!\W+(?:terminated by setW|can't use getU))")


def run(*argv: str) -> str:
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=TIMEOUT)  # noqa: S603
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout


def read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        return ""


def service() -> dict[str, object] | None:
    shown = run("systemctl", "show", UNIT, *(f"--property={p}" for p in PROPERTIES))
    got = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    try:
        active, sub, restarts, result, status = (got[p] for p in PROPERTIES)
        return {
            "active": active,
            "sub": sub,
            "restarts": int(restarts or 0),
            "result": result,
            "exit_status": int(status or 0),
        }
    except (KeyError, ValueError):
        return None


def ask(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as answer:  # noqa: S310 - http(s) only
        return json.load(answer)["result"]


def telegram(api: str, since: float) -> dict[str, object]:
    """getMe, getWebhookInfo, and the 409 Conflict lines Rachel8 logged since `since`, or
    since it last started if earlier (one that exited on a 409 shows it until restarted)."""
    shown = run("systemctl", "show", UNIT, "--timestamp=unix", "--property=ExecMainStartTimestamp")
    start = re.search(r"^ExecMainStartTimestamp=@(\d+)", shown, re.M)
    since = min(since, int(start[1])) if start else since
    journal = run("journalctl", "-u", UNIT, "--since", f"@{int(since)}", "-o", "cat", "--no-pager")
    found: dict[str, object] = {
        "get_me": "unconfigured",
        "webhook_set": None,
        "conflicts": len(CONFLICT.findall(journal)),
    }
    token = read_env(BOT_ENV).get(TOKEN_KEY)
    if token and api:
        try:
            found["get_me"] = "error"
            ask(f"{api.rstrip('/')}/bot{token}/getMe")
            found["get_me"] = "ok"
            found["webhook_set"] = bool(ask(f"{api.rstrip('/')}/bot{token}/getWebhookInfo")["url"])
        except Exception as exc:  # never printed: the URL holds the token
            if found["get_me"] == "error" and getattr(exc, "code", 0) == 401:
                found["get_me"] = "unauthorized"
    return found


def heartbeat(seq: int, api: str, since: float) -> dict[str, object]:
    disk, head = os.statvfs(DISK), read(HEAD_PATH).strip()
    memory = {
        k: int(v.split()[0]) * 1024
        for k, _, v in (line.partition(":") for line in read(f"{PROC}/meminfo").splitlines())
    }
    return {
        "seq": seq,
        "sent_at": time.time(),
        "agent": VERSION,
        "service": service(),
        "commit": head if re.fullmatch("[0-9a-f]{40}", head) else None,
        "uptime_seconds": float(read(f"{PROC}/uptime").split()[0]),
        "disk_free_bytes": disk.f_bavail * disk.f_frsize,
        "disk_total_bytes": disk.f_blocks * disk.f_frsize,
        "memory_available_bytes": memory.get("MemAvailable", 0),
        "memory_total_bytes": memory.get("MemTotal", 0),
        "telegram": telegram(api, since),
    }


def save(seq: int, at: float) -> None:
    # Atomic; and a full disk must not stop the heartbeat that says so.
    try:
        os.makedirs(os.path.dirname(STATE_PATH), exist_ok=True)
        with open(f"{STATE_PATH}.tmp", "w", encoding="utf-8") as handle:
            json.dump({"seq": seq, "at": at}, handle)
        os.replace(f"{STATE_PATH}.tmp", STATE_PATH)
    except OSError:
        pass


def main() -> int:
    env, now = read_env(ENV_PATH), time.time()
    url, credential = env.get(URL_VAR, ""), env.get(CREDENTIAL_VAR, "")
    if not url.startswith(("https://", "http://")) or not credential:
        print(f"rachel-cloud agent: no heartbeat URL or credential in {ENV_PATH}", file=sys.stderr)
        return 1
    try:
        last = json.loads(read(STATE_PATH))
        seq, since = int(last["seq"]), float(last["at"])
    except (ValueError, KeyError, TypeError):
        seq, since = 0, now - 60  # no state: the 409 lines of the last minute
    # Above the last one, and above any a lost state file held.
    seq = max(seq + 1, int(now * 1000))
    save(seq, since)  # before sending: a sequence is never sent twice
    try:
        body = json.dumps(heartbeat(seq, env.get(TELEGRAM_VAR, ""), since)).encode()
        auth = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
        request = urllib.request.Request(url, body, auth)  # noqa: S310 - http(s) checked above
        urllib.request.urlopen(request, timeout=10).close()  # noqa: S310
    except Exception as exc:  # one line; the timer runs it again
        why = f"answered {exc.code}" if isinstance(exc, urllib.error.HTTPError) else repr(exc)
        print(
            f"rachel-cloud agent: heartbeat {seq} not taken: {why.replace(credential, '*')[:200]}",
            file=sys.stderr,
        )
        return 1
    save(seq, now)  # the 409 lines until now were reported
    return 0


if __name__ == "__main__":
    sys.exit(main())
