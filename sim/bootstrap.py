"""The bootstrap's last act on a simulated VPS: its callback to the control plane.

What the bootstrap script does once cloud-init ran the install: POST the host
key and the install's result to the callback URL with the one-time token,
from the VPS's own address (the control plane binds the token to the IP the
provider assigned), retrying with exponential backoff until a 2xx answer or
the bounded number of attempts.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any

from core.cloud import vps_contract
from sim import curl
from sim.cloudconfig import parse_env_file
from sim.rootfs import RootFs

log = logging.getLogger(__name__)


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """One SSL context for every VPS: building one loads the CA bundle (tens of
    milliseconds on the event loop, which a thousand VPSs share)."""
    return ssl.create_default_context()


@dataclass(frozen=True)
class CallbackPolicy:
    """How the bootstrap retries its callback: exponential backoff, bounded.

    Attributes:
        first_delay: seconds before the first retry.
        max_delay: the backoff cap.
        max_attempts: give up after this many tries (bounded, like the script).
        timeout: per-request timeout in seconds.
    """

    first_delay: float = 0.2
    max_delay: float = 5.0
    max_attempts: int = 60
    timeout: float = 10.0


@dataclass
class CallbackRecord:
    """What happened to a VPS's callback, for stats and tests."""

    url: str | None = None
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    succeeded: bool = False
    #: Seconds spent waiting for answers (every attempt), not counting backoff sleeps.
    request_seconds: float = 0.0


def bootstrap_env(fs: RootFs) -> dict[str, str] | None:
    """The bootstrap env file's values, or None when the user data wrote none."""
    path = fs.real(vps_contract.BOOTSTRAP_ENV_PATH, "/")
    if not path.is_file():
        return None
    return parse_env_file(path.read_text(errors="replace"))


def _document(fs: RootFs, name: str) -> bytes:
    host_key_file = fs.real(vps_contract.HOST_KEY_PATH, "/")
    document: dict[str, Any] = {"host_key": host_key_file.read_text().strip()}
    result_file = fs.real(vps_contract.INSTALL_RESULT_PATH, "/")
    if result_file.is_file():
        try:
            document["install"] = json.loads(result_file.read_text())
        except ValueError:
            log.warning("VPS %s: its install result is not JSON; not reported", name)
    return json.dumps(document).encode()


async def run_callback(
    fs: RootFs, name: str, ip: str, record: CallbackRecord, policy: CallbackPolicy
) -> bool:
    """POST the host key and the install's result (when the install wrote one), retrying.

    Returns:
        True on a 2xx answer.
    """
    env = bootstrap_env(fs)
    if not env:
        return False
    url = env.get(vps_contract.CALLBACK_URL_VAR)
    token = env.get(vps_contract.CALLBACK_TOKEN_VAR)
    if not url or not token:
        return False
    body = _document(fs, name)
    record.url = url
    delay = policy.first_delay
    for attempt in range(1, policy.max_attempts + 1):
        record.attempts = attempt
        sent = time.monotonic()
        try:
            status = await curl.post_json(
                url,
                body,
                headers={"Authorization": f"Bearer {token}"},
                local_address=ip,
                timeout=policy.timeout,
                ssl_context=ssl_context(),
            )
            record.request_seconds += time.monotonic() - sent
            record.last_status = status
            record.last_error = None
            if 200 <= status < 300:
                record.succeeded = True
                return True
        except curl.CurlError as exc:
            record.request_seconds += time.monotonic() - sent
            record.last_error = f"{type(exc).__name__}: {exc}"
        if attempt < policy.max_attempts:
            await asyncio.sleep(delay)
            delay = min(policy.max_delay, delay * 2)
    log.warning("VPS %s gave up its callback after %d attempts", name, policy.max_attempts)
    return False
