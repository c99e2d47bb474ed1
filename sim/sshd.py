"""The SSH server of one simulated VPS (asyncssh): key auth, exec and SFTP.

Exec runs through `sim.shell.Shell` and SFTP (`sim.sftp`) is chrooted to the
VPS root, so nothing a client does over SSH touches the host outside that
directory. A command that takes time on a real box (an update's `prepare`:
`Shell.seconds`) answers that many of the VPS's simulated seconds later; the
loop serves everything else meanwhile.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping

import asyncssh

from sim.rootfs import RootFs
from sim.sftp import VpsSFTPServer
from sim.shell import Shell
from sim.systemd import Systemd


def home_of(user: str) -> str:
    """The home directory of a VPS user."""
    return "/root" if user == "root" else f"/home/{user}"


class _VpsSSHServer(asyncssh.SSHServer):
    """Per-connection auth: public keys only, checked against the VPS's keys."""

    def __init__(
        self,
        authorized: Callable[[], Mapping[str, set[bytes]]],
        connections: set[asyncssh.SSHServerConnection],
        opened: Callable[[], None] | None = None,
    ) -> None:
        self._authorized = authorized
        self._connections = connections
        self._opened = opened
        self._conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self._connections.add(conn)
        if self._opened is not None:
            self._opened()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._conn is not None:
            self._connections.discard(self._conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return key.public_data in self._authorized().get(username, set())


def _make_process_handler(
    fs: RootFs, systemd: Systemd, update_seconds: float = 0.0
) -> Callable[[asyncssh.SSHServerProcess[str]], Awaitable[None]]:
    async def handle(process: asyncssh.SSHServerProcess[str]) -> None:
        command = process.command
        if command is None:
            process.stderr.write("This simulated VPS supports exec and SFTP, not shells.\n")
            process.exit(1)
            return
        user = process.get_extra_info("username") or "root"
        account = fs.accounts.get(user)
        home = account.home if account else home_of(user)
        shell = Shell(fs, systemd, home, user=user, update_seconds=update_seconds)
        # The work happens at the end of the wait: until then the box is as before
        # (a release being prepared is not there yet), as a real one's is.
        busy = shell.seconds(command) * systemd.clock.scale
        if busy > 0:
            await asyncio.sleep(busy)
        result = shell.run(command)
        if result.stdout:
            process.stdout.write(result.stdout)
        if result.stderr:
            process.stderr.write(result.stderr)
        process.exit(result.exit_status)

    return handle


async def listen(
    *,
    host: str,
    port: int,
    host_key: asyncssh.SSHKey,
    fs: RootFs,
    systemd: Systemd,
    authorized: Callable[[], Mapping[str, set[bytes]]],
    connections: set[asyncssh.SSHServerConnection],
    opened: Callable[[], None] | None = None,
    update_seconds: float = 0.0,
) -> asyncssh.SSHAcceptor:
    """Start the VPS's SSH server on (host, port).

    Args:
        authorized: returns user -> public key blobs allowed to log in; called
            per attempt so keys added later count.
        connections: filled with the open connections, so they can be cut
            when the server powers off or is deleted.
        opened: called for each connection the server accepts (before any
            authentication), so that tests can count who opened one.
        update_seconds: simulated seconds an update's `prepare` takes to
            install a release (`Shell.seconds`).
    """

    def sftp_factory(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        return VpsSFTPServer(chan, fs)

    return await asyncssh.listen(
        host=host,
        port=port,
        server_host_keys=[host_key],
        server_factory=lambda: _VpsSSHServer(authorized, connections, opened),
        process_factory=_make_process_handler(fs, systemd, update_seconds),
        sftp_factory=sftp_factory,
        allow_scp=False,
        reuse_address=True,
        # A simulated VPS has nothing to forward; refuse it like a locked-down box.
        agent_forwarding=False,
        x11_forwarding=False,
        allow_pty=False,
    )


def silent_listener(host: str, port: int) -> socket.socket:
    """A port that answers nothing: what a frozen or cut-off box looks like from outside.

    The kernel completes the TCP handshake into the listen backlog (here, for
    the backlog's few connections) but no SSH banner ever comes, so a client
    waits out its banner or connect timeout, as against a real box that hangs.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(8)
    except OSError:
        sock.close()
        raise
    return sock
