"""SSH to a VPS (paramiko), against a pinned host key: sessions, commands, atomic writes.

The VPS's host key was reported by its cloud-init callback and pinned; the
client uses `RejectPolicy`, so a VPS that presents any other key (a
man-in-the-middle, a replaced server) is refused rather than trusted on first
use. Files are written atomically over SFTP: a temporary file created with
its mode before any content is written, given to its owner, then renamed over
the old one. What is written, and why, is `core.cloud.injection`'s.

Errors become `SSHError`s that say whether a retry may help; messages never
contain secret values.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import secrets
import socket
from dataclasses import dataclass
from typing import Any

import paramiko

from core.errors import RachelError
from core.security.redaction import redact

log = logging.getLogger(__name__)


class SSHError(RachelError):
    """Injection over SSH failed.

    Codes: `ssh_unreachable` (transient), `host_key_mismatch`,
    `ssh_auth_failed`, `service_failed`, `sftp_failed`.
    """

    code = "ssh_error"


@dataclass(frozen=True)
class Target:
    """Where and how to connect: the server's address, its pinned key, our key."""

    host: str
    port: int
    host_key: str  # "ssh-ed25519 AAAA..."
    private_key: str  # OpenSSH PEM; a secret, decrypted only inside the job
    username: str = "root"

    def __repr__(self) -> str:
        return f"Target(host={self.host!r}, port={self.port})"


def _pinned_key(host_key: str) -> paramiko.PKey:
    key_type, _, rest = host_key.strip().partition(" ")
    blob = base64.b64decode(rest.split()[0])
    return paramiko.PKey.from_type_string(key_type, blob)


def _tcp(target: Target, timeout: float) -> socket.socket:
    # paramiko writes a message in several small sends; with Nagle's algorithm
    # on, each exchange of the handshake then waits out the server's delayed
    # ACK (tens of milliseconds, several times per injection).
    sock = socket.create_connection((target.host, target.port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


#: AES-GCM first: one AEAD operation per packet instead of AES-CTR plus a
#: separate HMAC (paramiko's own first choice, encrypt-and-MAC), on both ends.
#: Every OpenSSH since 6.2 offers it; the rest of paramiko's list follows.
_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    rest = tuple(c for c in options.ciphers if c not in _CIPHERS)
    options.ciphers = tuple(c for c in _CIPHERS if c in options.ciphers) + rest
    return transport


def connect(target: Target, timeout: float) -> paramiko.SSHClient:
    """An SSH session to the target, its host key checked against the pinned one.

    Raises:
        SSHError: `host_key_mismatch`, `ssh_auth_failed` (permanent) or `ssh_unreachable`.
    """
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    name = target.host if target.port == 22 else f"[{target.host}]:{target.port}"
    pinned = _pinned_key(target.host_key)
    client.get_host_keys().add(name, pinned.get_name(), pinned)
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(target.private_key))
    try:
        client.connect(
            target.host,
            target.port,
            username=target.username,
            pkey=key,
            sock=_tcp(target, timeout),
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=False,
            look_for_keys=False,
            transport_factory=_transport,
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SSHError(
            f"{target.host}: host key does not match the pinned key",
            code="host_key_mismatch",
            transient=False,
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        raise SSHError(
            f"{target.host}: the server refused our key", code="ssh_auth_failed", transient=False
        ) from exc
    except paramiko.SSHException as exc:
        client.close()
        if "not found in known_hosts" in str(exc):
            raise SSHError(
                f"{target.host}: host key does not match the pinned key",
                code="host_key_mismatch",
                transient=False,
            ) from exc
        raise SSHError(
            f"{target.host}: SSH failed: {exc}", code="ssh_unreachable", transient=True
        ) from exc
    except (TimeoutError, OSError, EOFError) as exc:
        client.close()
        raise SSHError(
            f"{target.host}:{target.port}: cannot connect: {exc}",
            code="ssh_unreachable",
            transient=True,
        ) from exc
    return client


def run(
    client: paramiko.SSHClient,
    command: str,
    timeout: float,
    *,
    limit: int = 500,
    wait: float | None = None,
) -> tuple[int, str, str]:
    """Run a command; its exit status, standard output and error output.

    Both are redacted (no registered secret survives) and bounded: the last
    `limit` characters of each.

    Args:
        wait: seconds the command may take to exit (None: as long as it takes).

    Raises:
        TimeoutError: the command did not exit within `wait` seconds.
    """
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    if wait is not None and not stdout.channel.status_event.wait(wait):
        stdout.channel.close()
        raise TimeoutError(f"the command did not exit within {wait:.0f}s")
    status = stdout.channel.recv_exit_status()
    out, err = (s.read().decode("utf-8", "replace").strip() for s in (stdout, stderr))
    return status, redact(out)[-limit:], redact(err)[-limit:]


class SecretsSFTP(paramiko.SFTPClient):
    """paramiko's SFTP client, plus an exclusive create that sets the mode in the open."""

    def create_private(self, path: str, mode: int) -> paramiko.SFTPFile:
        """Create `path` (it must not exist) with permissions `mode`, open for writing.

        paramiko's `open` sends no attributes, so the mode needed a separate
        SETSTAT round trip; SFTP's OPEN carries it, and the server applies it
        when it creates the file (OpenSSH's sftp-server and asyncssh both do).
        """
        attrs = paramiko.SFTPAttributes()
        attrs.st_mode = mode
        flags = (
            paramiko.sftp.SFTP_FLAG_WRITE
            | paramiko.sftp.SFTP_FLAG_CREATE
            | paramiko.sftp.SFTP_FLAG_EXCL
        )
        # SFTPClient's own request call (what its `open` uses); untyped in the stubs.
        kind, msg = self._request(paramiko.sftp.CMD_OPEN, path, flags, attrs)  # type: ignore[attr-defined]
        if kind != paramiko.sftp.CMD_HANDLE or msg is None:
            raise paramiko.SFTPError("Expected handle")
        return paramiko.SFTPFile(self, msg.get_binary(), "wx")


def write_atomically(
    sftp: SecretsSFTP,
    path: str,
    content: str,
    mode: int,
    owner: tuple[int, int] | None = None,
) -> None:
    """Write `path` as a temp file beside it (created with `mode`, owned by `owner`), renamed over.

    Raises:
        OSError, paramiko.SSHException: the write failed; the temp file is gone.
    """
    directory, name = path.rsplit("/", 1)
    temp = f"{directory}/.{name}.{secrets.token_hex(4)}.tmp"
    # Created with its mode, exclusively: the content never exists in a file
    # others could read, nor in one someone else made.
    handle = sftp.create_private(temp, mode)
    try:
        with handle:
            handle.write(content.encode("utf-8"))
            # Not pipelined: paramiko's close discards a pipelined write's
            # status, and a full disk would rename an empty file over the secrets.
            handle.flush()
        if owner is not None:
            # Before the rename: the file is never the user's with other content,
            # nor in place with root's ownership (which Rachel8 could not read).
            sftp.chown(temp, *owner)
        sftp.posix_rename(temp, path)
    except (OSError, paramiko.SSHException):
        with contextlib.suppress(OSError, paramiko.SSHException):
            sftp.remove(temp)
        raise
