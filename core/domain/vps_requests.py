"""What customers (the API) and operators (the CLI) ask of a ready server's VPS, on demand.

Restart Rachel8, read its journal, diagnose the box: each reads the server's
row, leaves the database before any SSH (which may take OPS_TIMEOUT_SECONDS),
goes through `core.cloud.vps_ops` with the one connection rule
(`core.domain.vps_access.target_for`), and states every refusal as an error
with a code: the web app maps them to HTTP statuses, the CLI prints them.

A restart is an Event (kind `repair`) on the server's timeline, naming who
asked and what systemd said, whether it worked or not.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from core.cloud import vps_contract as vps
from core.cloud import vps_ops
from core.cloud.rachel8 import parse_credentials_document
from core.cloud.rachel8_unit import ServiceState
from core.cloud.ssh import SSHError, Target
from core.domain.lifecycle import Status, record_event
from core.domain.vps_access import target_for
from core.errors import RachelError
from core.platform.settings import Settings
from core.security.crypto import KeyRing
from core.security.redaction import MASK, redact
from core.store import rows
from core.store.db import connection
from core.store.models import Customer, Server
from core.store.vault import reveal

log = logging.getLogger(__name__)

#: Statuses a server does not come back from to ready by itself.
_GONE = (Status.DEPROVISIONING, Status.DELETED, Status.FAILED)

#: Seconds for the SSH connection and each command of one request.
OPS_TIMEOUT_SECONDS = 20.0
#: The Event kind of a restart (the health task's repairs use it too).
REPAIR_KIND = "repair"
#: SSH error codes that mean "we could not get in" (the rest: a command failed).
_UNREACHABLE = frozenset({"ssh_unreachable", "host_key_mismatch", "ssh_auth_failed"})


class VpsRequestRefused(RachelError):
    """The server cannot be asked: `not_found`, or `server_not_ready` (not ready, or no
    address or pinned host key recorded)."""

    code = "server_not_ready"


class VpsRequestFailed(RachelError):
    """The VPS was asked and did not answer: `vps_unreachable` (no SSH session: down,
    refused, timed out, host key changed, our key refused) or `vps_command_failed`."""

    code = "vps_command_failed"


@dataclass(frozen=True)
class Reached:
    """A ready server's VPS, ready to be asked.

    Attributes:
        server_id: the server.
        target: where and how to connect (holds the decrypted SSH key: never log it).
        secrets: the customer's own secret values, masked in whatever the VPS returns.
    """

    server_id: int
    target: Target
    secrets: tuple[str, ...] = ()


def reach(
    server_id: int, keyring: KeyRing, settings: Settings, *, with_secrets: bool = False
) -> Reached:
    """Read the server and its way in (the database is left before any SSH).

    Args:
        with_secrets: also reveal the customer's secrets (to mask them in logs).

    Raises:
        VpsRequestRefused: `not_found`, or `server_not_ready`.
        CryptoError: the server's SSH key (or a customer secret) cannot be opened.
    """
    with connection():
        server = rows.get(Server, server_id)
        if server is None:
            raise VpsRequestRefused(f"server {server_id} does not exist", code="not_found")
        if server.status != Status.READY:
            later = "any more" if server.status in _GONE else "yet"
            raise VpsRequestRefused(
                f"server {server_id} is {server.status}, not ready: its VPS cannot be asked {later}"
            )
        target = target_for(server, keyring, settings)
        if target is None:
            raise VpsRequestRefused(
                f"server {server_id} has no address or pinned host key recorded"
            )
        secrets: tuple[str, ...] = ()
        if with_secrets and server.customer_id is not None:
            secrets = customer_secrets(keyring, rows.get_by_id(Customer, server.customer_id))
    return Reached(server_id, target, secrets)


def customer_secrets(keyring: KeyRing, customer: Customer) -> tuple[str, ...]:
    """The customer's own secret values: bot token, Claude credentials (the document
    and each token), speech-to-text key. Values with no recognisable shape are only
    masked when named like this.

    Raises:
        CryptoError: a secret does not open with this key ring.
    """
    token = reveal(keyring, customer, "telegram_bot_token")
    document = reveal(keyring, customer, "claude_credentials")
    found = [v for v in (token, document, reveal(keyring, customer, "stt_api_key")) if v]
    if document:
        try:
            credentials = parse_credentials_document(document, now_ms=None)
        except RachelError:
            pass  # the whole document is masked already; its parts have known shapes
        else:
            found += [credentials.access_token, credentials.refresh_token]
    return tuple(found)


def _failed(server_id: int, exc: SSHError) -> VpsRequestFailed:
    if exc.code in _UNREACHABLE:
        return VpsRequestFailed(
            f"server {server_id}: the VPS cannot be reached over SSH ({exc.code}: {exc.message})",
            code="vps_unreachable",
            transient=exc.code == "ssh_unreachable",
        )
    return VpsRequestFailed(f"server {server_id}: {exc.message}", code="vps_command_failed")


Publish = Callable[[dict[str, Any]], None]


def restart(
    server_id: int,
    keyring: KeyRing,
    settings: Settings,
    *,
    actor: str,
    publish: Publish | None = None,
    timeout: float = OPS_TIMEOUT_SECONDS,
) -> ServiceState:
    """Restart Rachel8 (clearing a used-up start limit) and return the unit's state.

    The state is systemd's right after the restart; whether Rachel8 stays up is
    for its next heartbeats to tell. Either way an Event (kind `repair`,
    `actor`) records it.

    Raises:
        VpsRequestRefused: no such server, or not ready.
        VpsRequestFailed: the VPS could not be reached, or systemctl failed.
        CryptoError: the server's SSH key cannot be opened.
    """
    reached = reach(server_id, keyring, settings)
    try:
        state = vps_ops.restart_service(reached.target, timeout)
    except SSHError as exc:
        error = _failed(server_id, exc)
        # The caller reports the error (the web app logs it, the CLI prints it).
        _record(server_id, f"restart requested: failed: {exc.code}: {exc.message}", actor, publish)
        raise error from exc
    _record(server_id, f"restart requested: Rachel8 {state.describe()}", actor, publish)
    log.info(
        "server %s: Rachel8 restarted at the request of %s: %s",
        server_id,
        actor,
        state.describe(),
        extra={"server_id": server_id},
    )
    return state


def _record(server_id: int, message: str, actor: str, publish: Publish | None) -> None:
    with connection():
        record_event(server_id, REPAIR_KIND, message, actor=actor, publish=publish)


def logs(
    server_id: int,
    lines: int,
    keyring: KeyRing,
    settings: Settings,
    *,
    timeout: float = OPS_TIMEOUT_SECONDS,
) -> list[str]:
    """The last `lines` lines of Rachel8's journal, redacted (the customer's secrets too).

    Raises:
        ValueError: `lines` is not within 1..MAX_LOG_LINES.
        VpsRequestRefused, VpsRequestFailed, CryptoError: as `restart`.
    """
    if not 1 <= lines <= vps_ops.MAX_LOG_LINES:
        raise ValueError(f"lines must be between 1 and {vps_ops.MAX_LOG_LINES}, got {lines}")
    reached = reach(server_id, keyring, settings, with_secrets=True)
    try:
        return vps_ops.journal_tail(reached.target, lines, timeout, extra_secrets=reached.secrets)
    except SSHError as exc:
        raise _failed(server_id, exc) from exc


def diagnose(
    server_id: int,
    keyring: KeyRing,
    settings: Settings,
    *,
    journal_lines: int = 40,
    timeout: float = OPS_TIMEOUT_SECONDS,
) -> vps_ops.Diagnosis:
    """Unit state, journal tail, disk, memory, uptime, commit, versions, agent timer.

    Parts that could not be read are named in the diagnosis's `problems`.

    Raises:
        VpsRequestRefused, VpsRequestFailed, CryptoError: as `restart`.
    """
    reached = reach(server_id, keyring, settings, with_secrets=True)
    try:
        found = vps_ops.diagnose(
            reached.target,
            vps.Layout(settings.rachel8_user),
            timeout,
            journal_lines=journal_lines,
        )
    except SSHError as exc:
        raise _failed(server_id, exc) from exc
    return dataclasses.replace(
        found,
        journal=mask(found.journal, reached.secrets),
        problems=mask(found.problems, reached.secrets),
    )


def mask(lines: Sequence[str], secrets: Sequence[str]) -> list[str]:
    """`lines` redacted, and with each of `secrets` masked (values of no known shape)."""
    masked = []
    for line in lines:
        text = redact(line)
        for secret in secrets:
            if secret:
                text = text.replace(secret, MASK)
        masked.append(text)
    return masked
