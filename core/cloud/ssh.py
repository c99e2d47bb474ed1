"""Secret injection over SSH (paramiko), against a pinned host key.

The VPS's host key was reported by its cloud-init callback and pinned; the
client uses `RejectPolicy`, so a VPS that presents any other key (a
man-in-the-middle, a replaced server) is refused rather than trusted on first
use. The secrets file is written atomically over SFTP: a temporary file with
mode 0600 set before any content is written, then renamed over the old one;
then the service is restarted and must report `active`.

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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import paramiko

from core.cloud import vps_contract as vps
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


def env_file(values: Mapping[str, str]) -> str:
    """systemd EnvironmentFile text: KEY="value" lines, quoted and escaped."""
    lines = []
    for key, value in values.items():
        if not key.replace("_", "").isalnum() or not key[0].isalpha():
            raise ValueError(f"invalid environment variable name {key!r}")
        escaped = (
            value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("$", "\\$")
        )
        lines.append(f'{key}="{escaped}"\n')
    return "".join(lines)


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


def _client(target: Target, timeout: float) -> paramiko.SSHClient:
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


def _run(client: paramiko.SSHClient, command: str, timeout: float) -> tuple[int, str, str]:
    """Run a command; its exit status, standard output and error output (redacted)."""
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    status = stdout.channel.recv_exit_status()
    out, err = (s.read().decode("utf-8", "replace").strip() for s in (stdout, stderr))
    return status, redact(out)[-500:], redact(err)[-500:]


class _SecretsSFTP(paramiko.SFTPClient):
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


def _write_atomically(sftp: _SecretsSFTP, path: str, content: str, mode: int) -> None:
    directory, name = path.rsplit("/", 1)
    temp = f"{directory}/.{name}.{secrets.token_hex(4)}.tmp"
    try:
        # Created with its mode, exclusively: the content never exists in a
        # file others could read, nor in one someone else made.
        handle = sftp.create_private(temp, mode)
    except FileNotFoundError:
        # First injection into a VPS whose image lacks the directory: one
        # round trip more, instead of a stat before every injection.
        sftp.mkdir(directory, mode=0o700)
        handle = sftp.create_private(temp, mode)
    try:
        with handle:
            handle.write(content.encode("utf-8"))
            # Not pipelined: paramiko's close discards a pipelined write's
            # status, and a full disk would rename an empty file over the secrets.
            handle.flush()
        sftp.posix_rename(temp, path)
    except (OSError, paramiko.SSHException):
        with contextlib.suppress(OSError, paramiko.SSHException):
            sftp.remove(temp)
        raise


def _restart(client: paramiko.SSHClient, host: str, unit: str, timeout: float) -> None:
    """Restart the unit and check it is active, in one command (one channel).

    `systemctl is-active` prints the unit's state on standard output, and only
    runs when the restart succeeded; what the restart says goes to standard
    error (warnings included, which do not fail it).
    """
    status, out, err = _run(
        client, f"systemctl restart {unit} && systemctl is-active {unit}", timeout
    )
    state = out.splitlines()[-1] if out else ""
    if status == 0 and state == "active":
        return
    if state:
        raise SSHError(
            f"{host}: {unit} is not active after restart ({state})",
            code="service_failed",
            transient=False,
        )
    raise SSHError(
        f"{host}: systemctl restart {unit} exited {status}: {err or out}",
        code="service_failed",
        transient=False,
    )


def inject(
    target: Target,
    secrets_env: Mapping[str, str],
    *,
    timeout: float = 30.0,
    unit: str = vps.SERVICE_UNIT,
) -> None:
    """Write the secrets file, restart the service, check it is active.

    Raises:
        SSHError: transient when the VPS could not be reached; permanent for a
            host key mismatch, a refused key, or a service that will not start.
    """
    client = _client(target, timeout)
    try:
        try:
            transport = client.get_transport()
            sftp = _SecretsSFTP.from_transport(transport) if transport is not None else None
            if sftp is None:
                raise paramiko.SSHException("the SSH session closed before SFTP started")
            try:
                _write_atomically(sftp, vps.SECRETS_PATH, env_file(secrets_env), vps.SECRETS_MODE)
            finally:
                sftp.close()
        except (OSError, paramiko.SSHException) as exc:
            raise SSHError(
                f"{target.host}: writing the secrets file failed: {exc}",
                code="sftp_failed",
                transient=True,
            ) from exc
        try:
            _restart(client, target.host, unit, timeout)
        except (OSError, paramiko.SSHException) as exc:
            raise SSHError(
                f"{target.host}: running systemctl failed: {exc}",
                code="ssh_unreachable",
                transient=True,
            ) from exc
    finally:
        client.close()
