"""The cloud-init callback: one-time bearer tokens and what accepting one does.

The token is issued when the server is created and travels in its user data
(it opens nothing but this callback). Only its SHA-256 is stored. It is valid
once, for one server, until the boot deadline, and only from the IPv4 address
Hetzner assigned to that server. The callback carries the install's outcome
(`core.domain.install_outcome`). A good install at the server's commit pins the
VPS's SSH host key and moves the server from cloud_init to injecting_secrets in
one compare-and-set; a failed one, or another commit, spends the token and
moves it to failed at once, with the reason (the caller queues the cleanup).
Whatever is wrong with the request itself, nothing changes.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from core.domain.install_outcome import InstallOutcome, failure_reason
from core.domain.lifecycle import Publisher, Status, transition
from core.errors import RachelError
from core.platform.clock import SYSTEM_CLOCK, Clock, ManualClock
from core.store import rows
from core.store.models import Image, PoolServer, Server

log = logging.getLogger(__name__)

TOKEN_BYTES = 32
MAX_HOST_KEY_LENGTH = 512
#: The key blob of an OpenSSH public key line: strict base64, nothing else.
_KEY_BLOB = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class CallbackRejected(RachelError):
    """A callback that is refused; nothing was changed.

    Its `code` says why: `unauthorized` (no such server, or the token),
    `conflict` (the server is not waiting for a callback) or `invalid_host_key`.
    An unknown server is refused exactly like a bad token, so that the route
    does not tell a prober which server ids exist.
    """

    code = "callback_rejected"

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message, code=code)


def hash_token(token: str) -> str:
    """The stored form of a callback token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(
    server: Server, ttl_seconds: float, clock: Clock = SYSTEM_CLOCK, token: str | None = None
) -> str:
    """Arm `server`'s one-time token (the caller saves the row); return it.

    Args:
        server: the row to arm.
        ttl_seconds: validity from now (the boot deadline).
        clock: where `now` comes from.
        token: the token to arm; a random one when None. The pipeline passes a
            token derived from the server id and attempt, so that a retried
            create that adopts the VPS of an earlier run arms the same token that
            VPS was given, while a new attempt's token differs from every earlier one.
    """
    token = token or secrets.token_urlsafe(TOKEN_BYTES)
    server.callback_token_hash = hash_token(token)
    server.callback_token_expires_at = clock.now() + timedelta(seconds=ttl_seconds)
    server.callback_token_used_at = None
    return token


def parse_host_key(text: str) -> str:
    """Validate an OpenSSH ed25519 public key line; return it normalised (no comment).

    Raises:
        CallbackRejected: `invalid_host_key`, it is not an ed25519 public key.
    """
    if not isinstance(text, str) or len(text) > MAX_HOST_KEY_LENGTH:
        raise CallbackRejected(
            "host_key must be an OpenSSH ed25519 public key line",
            code="invalid_host_key",
        )
    line = text.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in line):
        # One line: a second key, or anything else, smuggled after a newline is refused.
        raise CallbackRejected(
            "host_key must be one OpenSSH public key line", code="invalid_host_key"
        )
    parts = line.split()
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        raise CallbackRejected("host_key must start with ssh-ed25519", code="invalid_host_key")
    # The decoder below skips characters outside the base64 alphabet, so a blob
    # with a NUL or other junk appended decoded to a valid key, and the junk
    # was pinned with it (PostgreSQL then refused the NUL: a 500). Found by
    # tests/reliability/test_bad_input.py.
    if not _KEY_BLOB.fullmatch(parts[1]):
        raise CallbackRejected(
            "host_key is not a valid ed25519 public key", code="invalid_host_key"
        )
    try:
        key = load_ssh_public_key(f"{parts[0]} {parts[1]}".encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise CallbackRejected(
            "host_key is not a valid ed25519 public key", code="invalid_host_key"
        ) from None
    if not isinstance(key, Ed25519PublicKey):
        raise CallbackRejected("host_key is not an ed25519 key", code="invalid_host_key")
    return f"{parts[0]} {parts[1]}"


def same_address(a: str | None, b: str | None) -> bool:
    """Whether two addresses are the same IP (False when either is missing or malformed)."""
    if not a or not b:
        return False
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def token_refusal(
    token: str,
    stored_hash: str | None,
    expires_at: datetime | None,
    now: datetime,
    *,
    spent: bool,
    source_ip: str | None,
    address: str | None,
    check_source: bool,
) -> str | None:
    """Why a callback's one-time token must be refused, for the log; None: accept it.

    The one rule for every callback (a server's, an image builder's, a pool
    server's): the token matches the stored hash (compared in constant time;
    hashed even when nothing is stored, so that an unknown id takes as long),
    was not spent, has not expired, and, with `check_source`, comes from the
    address the VPS was given. Callers answer one `unauthorized` for every
    reason, so that a prober learns nothing.

    Args:
        token: the bearer token presented.
        stored_hash: the armed token's hash (None: none armed, or no such row).
        expires_at: when the armed token expires.
        now: the time of the callback.
        spent: the token was used already, or the row no longer waits for it.
        source_ip: the client address the request came from.
        address: the VPS's own address.
        check_source: bind the token to `address`.
    """
    presented = hash_token(token)
    if not token or not stored_hash or not hmac.compare_digest(presented, stored_hash):
        return "a wrong or already used token"
    if spent:
        return "a replayed callback"
    if expires_at is None or now >= expires_at:
        return f"a callback after its deadline ({expires_at})"
    if check_source and not same_address(source_ip, address):
        return f"a callback from another address than the VPS's ({address})"
    return None


RowT = TypeVar("RowT")


@dataclass(frozen=True)
class ArmedToken:
    """What a row holds of its one-time callback token (for `refuse_unless_valid`)."""

    stored_hash: str | None
    expires_at: datetime | None
    spent: bool  # used already, or the row no longer waits for it
    address: str | None  # the VPS's own address


def refuse_unless_valid(
    who: str,
    token: str,
    row: RowT | None,
    armed: Callable[[RowT], ArmedToken],
    now: datetime,
    *,
    source_ip: str | None,
    check_source: bool,
) -> tuple[RowT, ArmedToken]:
    """`row` and its armed token, unless `token_refusal` refuses the callback (or no row).

    Raises:
        CallbackRejected: `unauthorized`, one message for every reason (the log says which).
    """
    held = armed(row) if row is not None else None
    why = token_refusal(
        token,
        held.stored_hash if held else None,
        held.expires_at if held else None,
        now,
        spent=held.spent if held else False,
        source_ip=source_ip,
        address=held.address if held else None,
        check_source=check_source,
    )
    if row is None or held is None or why is not None:
        log.warning("%s: callback refused, %s, from %s", who, why or "no such row", source_ip)
        raise CallbackRejected("invalid callback token", code="unauthorized")
    return row, held


def spend_token(
    model: type[Image] | type[PoolServer],
    row_id: int,
    *,
    state: str,
    stored: str | None,
    changes: Mapping[str, object],
) -> None:
    """Apply a verified callback's `changes` and spend its one-time token, in one UPDATE.

    A compare-and-set on the row's state and on the token hash that was
    verified: of two concurrent callbacks with the same token, one moves the
    row. For an image builder's and a pool server's rows (a server's goes
    through its status transition).

    Raises:
        CallbackRejected: `unauthorized`: a concurrent callback spent the token first.
    """
    moved = (
        model.update(**changes, callback_token_hash=None)
        .where(
            (model.id == row_id) & (model.state == state) & (model.callback_token_hash == stored)
        )
        .execute()
    )
    if not moved:
        raise CallbackRejected("invalid callback token", code="unauthorized")


def accept_callback(
    server_id: int,
    token: str,
    host_key: str,
    source_ip: str | None,
    *,
    install: InstallOutcome,
    check_source: bool = True,
    clock: Clock = SYSTEM_CLOCK,
    publish: Publisher | None = None,
    next_job: Callable[[Server, datetime], str | None] | None = None,
) -> Server:
    """Verify a cloud-init callback; advance the server to injecting_secrets, or fail it.

    Args:
        server_id: from the URL.
        token: the bearer token.
        host_key: the VPS's SSH host public key (OpenSSH line).
        source_ip: the client address the request came from.
        check_source: bind the token to the server's IPv4 (off only behind
            proxies that hide the client address).
        clock: where `now` comes from.
        publish: the transition publisher.
        next_job: given the server and the moment it enters injecting_secrets,
            the id the caller will queue its injection under (None: none),
            recorded by the transition itself rather than by an UPDATE after.
        install: the install's outcome, as the VPS reported it.

    Returns:
        The server, now in injecting_secrets (the caller enqueues the injection)
        or, when the install failed or checked out another commit than
        `Server.rachel8_commit`, failed (the caller enqueues the cleanup).

    Raises:
        CallbackRejected: `unauthorized` unknown server, or wrong, reused, expired
            or foreign token (one message for all, so that a prober learns
            nothing, not even which server ids exist); `conflict` the server is
            not waiting for a callback; `invalid_host_key` malformed host key.
    """
    unauthorized = CallbackRejected("invalid callback token", code="unauthorized")
    server = rows.get(Server, server_id)
    now = clock.now()
    why = token_refusal(
        token,
        server.callback_token_hash if server is not None else None,
        server.callback_token_expires_at if server is not None else None,
        now,
        spent=server is not None and server.callback_token_used_at is not None,
        source_ip=source_ip,
        address=server.ipv4 if server is not None else None,
        check_source=check_source,
    )
    if server is None or why is not None:
        what = f"server {server_id}" if server is not None else f"unknown server {server_id}"
        log.warning("%s: callback refused, %s, from %s", what, why or "no such server", source_ip)
        raise unauthorized
    pinned = parse_host_key(host_key)
    if server.status != Status.CLOUD_INIT:
        raise CallbackRejected(
            f"server {server_id} is {server.status}, not waiting for cloud-init",
            code="conflict",
        )
    reason = failure_reason(install, server.rachel8_commit)
    if reason is not None:
        return _fail(server, reason, now, publish, unauthorized)
    changes: dict[str, object] = {
        "host_key": pinned,
        "callback_token_used_at": now,
        "callback_token_hash": None,
        "retries": 0,
        "deadline_at": None,
    }
    installed = ""
    if install is not None:
        changes["rachel8_commit"] = install.commit
        installed = f"{install.describe()} installed; "
    job = next_job(server, now) if next_job is not None else None
    if job is not None:
        changes["job_id"] = job
    moved = transition(
        server_id,
        Status.CLOUD_INIT,
        Status.INJECTING_SECRETS,
        message=f"cloud-init finished; {installed}host key pinned",
        actor="system",
        changes=changes,
        # The phase is entered at `now`: the job id above is stamped with it.
        clock=ManualClock(now),
        publish=publish,
        row=server,  # now as written: no second read
    )
    if not moved:  # a concurrent callback won the compare-and-set
        raise unauthorized
    return server


def _fail(
    server: Server,
    reason: str,
    now: datetime,
    publish: Publisher | None,
    unauthorized: CallbackRejected,
) -> Server:
    """Spend the token and fail the server at once: waiting for the boot deadline, or
    injecting secrets into a box without a working Rachel8, would help nobody."""
    phase = Status.CLOUD_INIT
    moved = transition(
        server.id,
        phase,
        Status.FAILED,
        message=f"{phase} failed: {reason}",
        actor="system",
        changes={
            "callback_token_used_at": now,
            "callback_token_hash": None,
            "deadline_at": None,
            "last_error": reason,
            "failed_phase": phase.value,
        },
        clock=ManualClock(now),
        publish=publish,
        row=server,
    )
    if not moved:  # a concurrent callback won the compare-and-set
        raise unauthorized
    log.error(
        "server %s: %s failed: %s; cleanup follows, retry allowed (rachel-cloud retry %s)",
        server.id,
        phase,
        reason,
        server.id,
        extra={"server_id": server.id, "phase": phase.value},
    )
    return server
