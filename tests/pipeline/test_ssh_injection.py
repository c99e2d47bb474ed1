"""Secret injection with paramiko into a simulated VPS (a real SSH server on loopback)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import shutil
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest

from core.cloud import vps_contract as vps
from core.cloud.cloudinit import CloudConfigInput, Rachel8Install, render
from core.cloud.hetzner import HetznerAdapter
from core.cloud.provider import CreateSpec
from core.cloud.ssh import SSHError, Target, _client, _SecretsSFTP, env_file, inject
from core.platform.settings import Settings
from core.security.crypto import SSHKeyPair, generate_ssh_keypair
from sim.server import SimulatorServer


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def boot(
    sim: SimulatorServer, adapter: HetznerAdapter, server_id: int, with_unit: bool = True
) -> tuple[SSHKeyPair, str, str]:
    """Create a VPS from real user data and wait for its SSH; return (key, ip, host key)."""
    pair = generate_ssh_keypair()
    user_data = render(
        CloudConfigInput(
            hostname=f"t-{server_id}",
            authorized_key=pair.public_openssh,
            callback_url=f"http://127.0.0.1:{_closed_port()}/callbacks/cloud-init/{server_id}",
            callback_token="unused",
            install=Rachel8Install.from_settings(Settings.load(environ={}, env_file=None)),
        )
    )
    if not with_unit:
        user_data = user_data.replace(vps.SERVICE_UNIT_PATH, "/etc/not-the-unit")
    fw = adapter.ensure_firewall("t-ssh", ("0.0.0.0/0",))
    key = adapter.ensure_fleet_key("t-fleet", lambda: generate_ssh_keypair().public_openssh)
    server, _ = adapter.create_server(
        CreateSpec(
            server_id=server_id,
            customer_id=1,
            name=f"t-{server_id}",
            server_type="cx23",
            image="debian-12",
            location="fsn1",
            user_data=user_data,
            env="test",
        ),
        fw,
        key,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        machine = sim.vps(server.id)
        if machine is not None and machine.ssh_listening:
            assert server.ipv4 == machine.ip
            return pair, machine.ip, machine.host_public_key
        time.sleep(0.02)
    raise AssertionError("the VPS's SSH never came up")


SECRETS = {
    "TELEGRAM_BOT_TOKEN": "123456:planted-telegram-token",
    "CLAUDE_CREDENTIALS": '{"refresh_token": "planted \\"quoted\\" $HOME"}',
}


def test_inject_writes_0600_atomically_and_starts_the_service(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 1)
    inject(Target(ip, 2222, host_key, pair.private_openssh), SECRETS, timeout=10)
    machine = next(v for v in [sim.vps(s.id) for s in adapter.list_managed()] if v)
    path = machine.root / vps.SECRETS_PATH.lstrip("/")
    assert path.read_text() == env_file(SECRETS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secrets.env"], "no temp file left"
    assert machine.systemd.is_active(vps.SERVICE_UNIT)
    # A second injection replaces the file in place.
    inject(
        Target(ip, 2222, host_key, pair.private_openssh),
        {**SECRETS, "TELEGRAM_BOT_TOKEN": "654321:new-token"},
        timeout=10,
    )
    assert "654321:new-token" in path.read_text()


def test_inject_creates_the_secrets_directory_when_the_image_lacks_it(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 5)
    machine = next(v for v in [sim.vps(s.id) for s in adapter.list_managed()] if v)
    directory = machine.root / vps.SECRETS_PATH.lstrip("/").rsplit("/", 1)[0]
    shutil.rmtree(directory, ignore_errors=True)
    inject(Target(ip, 2222, host_key, pair.private_openssh), SECRETS, timeout=10)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert (directory / "secrets.env").read_text() == env_file(SECRETS)
    assert machine.systemd.is_active(vps.SERVICE_UNIT)


def test_the_temp_file_is_created_with_its_mode_and_never_reused(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 7)
    machine = next(v for v in [sim.vps(s.id) for s in adapter.list_managed()] if v)
    client = _client(Target(ip, 2222, host_key, pair.private_openssh), timeout=10)
    try:
        transport = client.get_transport()
        assert transport is not None
        sftp = _SecretsSFTP.from_transport(transport)
        assert sftp is not None
        with sftp.create_private("/tmp/.s.tmp", 0o600):
            # Before a byte is written, the file already has its mode.
            on_disk = machine.root / "tmp/.s.tmp"
            assert stat.S_IMODE(on_disk.stat().st_mode) == 0o600
        with pytest.raises(OSError):
            sftp.create_private("/tmp/.s.tmp", 0o600)  # exclusive: not someone else's file
        with pytest.raises(FileNotFoundError):
            sftp.create_private("/nonexistent/.s.tmp", 0o600)
    finally:
        client.close()


def test_the_session_is_encrypted_with_aes_gcm(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 6)
    client = _client(Target(ip, 2222, host_key, pair.private_openssh), timeout=10)
    try:
        transport = client.get_transport()
        assert transport is not None
        assert (transport.local_cipher, transport.remote_cipher) == (
            "aes128-gcm@openssh.com",
            "aes128-gcm@openssh.com",
        )
    finally:
        client.close()


def test_a_different_host_key_is_refused(sim: SimulatorServer, adapter: HetznerAdapter) -> None:
    pair, ip, _ = boot(sim, adapter, 2)
    impostor = generate_ssh_keypair().public_openssh
    with pytest.raises(SSHError) as info:
        inject(Target(ip, 2222, impostor, pair.private_openssh), SECRETS, timeout=10)
    assert info.value.code == "host_key_mismatch" and not info.value.transient


def test_a_key_the_vps_does_not_know_is_refused(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    _, ip, host_key = boot(sim, adapter, 3)
    with pytest.raises(SSHError) as info:
        inject(
            Target(ip, 2222, host_key, generate_ssh_keypair().private_openssh), SECRETS, timeout=10
        )
    assert info.value.code == "ssh_auth_failed" and not info.value.transient


def test_refused_ssh_is_transient(sim: SimulatorServer, adapter: HetznerAdapter) -> None:
    sim.set_faults({"ssh_refuse": 1.0})
    pair = generate_ssh_keypair()
    with pytest.raises(SSHError) as info:
        inject(
            Target("127.0.0.1", _closed_port(), pair.public_openssh, pair.private_openssh),
            SECRETS,
            timeout=3,
        )
    assert info.value.code == "ssh_unreachable" and info.value.transient


def test_missing_unit_fails_the_service_start(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 4, with_unit=False)
    with pytest.raises(SSHError) as info:
        inject(Target(ip, 2222, host_key, pair.private_openssh), SECRETS, timeout=10)
    assert info.value.code == "service_failed" and not info.value.transient
    assert "planted" not in str(info.value)


class _FullDisk(asyncssh.SFTPServer):
    """An SFTP server on a disk with no room left: every write fails."""

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        raise asyncssh.SFTPFailure("No space left on device")


@pytest.fixture
def full_disk_vps(tmp_path: Path) -> Iterator[tuple[Path, int, str, SSHKeyPair]]:
    """A real SSH server on loopback whose disk is full; yields (root, port, host key, our key)."""
    root = tmp_path / "vps"
    (root / vps.SECRETS_PATH.lstrip("/")).parent.mkdir(parents=True)
    ours = generate_ssh_keypair()
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    authorized = asyncssh.import_authorized_keys(ours.public_openssh)
    loop = asyncio.new_event_loop()
    listening: concurrent.futures.Future[asyncssh.SSHAcceptor] = concurrent.futures.Future()

    async def serve() -> None:
        try:
            listening.set_result(
                await asyncssh.listen(
                    "127.0.0.1", 0, server_host_keys=[host_key], authorized_client_keys=authorized,
                    sftp_factory=lambda chan: _FullDisk(chan, chroot=str(root).encode()),
                )
            )  # fmt: skip
        except Exception as exc:
            listening.set_exception(exc)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop)
    acceptor = listening.result(10)
    public = host_key.export_public_key("openssh").decode().strip()
    yield root, acceptor.sockets[0].getsockname()[1], public, ours
    loop.call_soon_threadsafe(acceptor.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_a_failed_write_keeps_the_old_secrets_and_leaves_no_temp_file(
    full_disk_vps: tuple[Path, int, str, SSHKeyPair],
) -> None:
    root, port, host_key, ours = full_disk_vps
    secrets_file = root / vps.SECRETS_PATH.lstrip("/")
    secrets_file.write_text("TELEGRAM_BOT_TOKEN=the-old-one\n")
    with pytest.raises(SSHError) as info:
        inject(Target("127.0.0.1", port, host_key, ours.private_openssh), SECRETS, timeout=10)
    assert info.value.code == "sftp_failed" and info.value.transient
    assert "No space left" in str(info.value) and "planted" not in str(info.value)
    assert secrets_file.read_text() == "TELEGRAM_BOT_TOKEN=the-old-one\n"
    assert [p.name for p in secrets_file.parent.iterdir()] == ["secrets.env"], "no temp file left"
