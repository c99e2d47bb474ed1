#!/usr/bin/python3
"""rachel-cloud bootstrap: report this VPS's SSH host key and its install outcome.

Run by cloud-init last, whatever the install did: a failed install is reported
too, so the control plane fails the server at once instead of at its boot
deadline. POSTs {"host_key": ..., "install": <the install's outcome>} to the
callback URL with the one-time bearer token, retrying until a 2xx answer.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

# <shared> (core.cloud.vps_scripts splices common.py's block here)
from core.cloud.vps_scripts.common import read_env

# </shared>

# <constants> (core.cloud.vps_scripts renders them from core.cloud.vps_contract)
BOOTSTRAP_ENV = "/etc/rachel-cloud/bootstrap.env"
HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key.pub"
RESULT = "/var/lib/rachel-cloud/install.json"
URL_VAR = "RACHEL_CALLBACK_URL"
TOKEN_VAR = "RACHEL_CALLBACK_TOKEN"  # noqa: S105 - a variable name
# </constants>

FIRST_DELAY = 2.0
MAX_DELAY = 60.0
REQUEST_TIMEOUT = 15.0


def outcome() -> dict[str, object]:
    """The install's outcome; a failure without a step when it left none to read."""
    try:
        with open(RESULT, encoding="utf-8") as handle:
            found = json.load(handle)
        if isinstance(found, dict):
            return found
    except (OSError, ValueError):
        pass
    return {
        "ok": False,
        "failed_step": None,
        "exit_status": None,
        "log_tail": f"the install left no readable outcome in {RESULT}",
        "cloud_init": {"status": "unknown", "errors": []},
        "commit": None,
        "versions": {"bun": None, "claude_code": None},
    }


def body() -> bytes:
    """The callback's JSON body."""
    with open(HOST_KEY_PATH, encoding="utf-8") as handle:
        host_key = handle.read().strip()
    return json.dumps({"host_key": host_key, "install": outcome()}).encode("utf-8")


def post(url: str, token: str, data: bytes) -> tuple[int, str]:
    """One attempt: (HTTP status or 0, what happened)."""
    request = urllib.request.Request(  # noqa: S310 - the control plane's URL, http(s) only
        url,
        data=data,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as answer:  # noqa: S310
            return answer.status, "accepted"
    except urllib.error.HTTPError as exc:
        return exc.code, f"answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return 0, f"{type(exc).__name__}"


def main(attempts: int = 0) -> int:
    """Report; `attempts` 0 retries until accepted (a positive number bounds it)."""
    env = read_env(BOOTSTRAP_ENV)
    url, token = env.get(URL_VAR, ""), env.get(TOKEN_VAR, "")
    if not url.startswith(("https://", "http://")) or not token:
        print("rachel-cloud: no callback URL or token in the bootstrap env", file=sys.stderr)
        return 1
    data = body()
    delay, attempt = FIRST_DELAY, 0
    while True:
        attempt += 1
        status, what = post(url, token, data)
        if 200 <= status < 300:
            print("rachel-cloud: callback accepted")
            return 0
        if attempts and attempt >= attempts:
            print(f"rachel-cloud: callback {what}; giving up", file=sys.stderr)
            return 1
        print(f"rachel-cloud: callback {what}, retrying in {delay:.0f}s", file=sys.stderr)
        time.sleep(delay)
        delay = min(MAX_DELAY, delay * 2)


if __name__ == "__main__":
    sys.exit(main())
