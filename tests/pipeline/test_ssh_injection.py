"""Injecting Rachel8's configuration with paramiko into a simulated VPS (real SSH on loopback)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import posixpath
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
from core.cloud.injection import AgentConfig, Injected, inject
from core.cloud.provider import CreateSpec
from core.cloud.rachel8 import ClaudeCredentials, Rachel8Config, parse_credentials_document
from core.cloud.ssh import SecretsSFTP, SSHError, Target, connect, run
from core.platform.settings import Settings
from core.security.crypto import SSHKeyPair, generate_ssh_keypair
from sim.server import SimulatorServer
from sim.vps import Vps
from tests import factories
from tests.pipeline import rachel8_vps


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def boot(
    sim: SimulatorServer,
    adapter: HetznerAdapter,
    server_id: int,
    with_unit: bool = True,
    with_agent: bool = True,
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
            heartbeat_interval=30.0,
        )
    )
    if not with_unit:
        user_data = user_data.replace(vps.SERVICE_UNIT_PATH, "/etc/not-the-unit")
    if not with_agent:  # a VPS created before the health agent existed
        user_data = user_data.replace(vps.AGENT_TIMER_PATH, "/etc/not-the-timer")
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
        if machine is not None and machine.ssh_listening and machine.install_result is not None:
            assert server.ipv4 == machine.ip
            return pair, machine.ip, machine.host_public_key
        time.sleep(0.02)
    raise AssertionError("the VPS's SSH never came up")


LAYOUT = rachel8_vps.LAYOUT
CONFIG = Rachel8Config(
    bot_token=factories.bot_token("inject"),
    owner_id=factories.OWNER_ID,
    credentials=ClaudeCredentials(
        "sk-ant-oat01-planted-access", "sk-ant-ort01-planted-refresh", factories.EXPIRES_AT_MS
    ),
)


AGENT = AgentConfig(
    heartbeat_url="https://cp.example.com/heartbeats/1",
    credential="planted-heartbeat-credential-0123456789",
    telegram_api_url="https://api.telegram.example",
)


def _injected(
    target: Target, config: Rachel8Config = CONFIG, agent: AgentConfig = AGENT
) -> Injected:
    return inject(target, config, agent=agent, layout=LAYOUT, timeout=10)


def _inject(ip: str, host_key: str, pair: SSHKeyPair, config: Rachel8Config = CONFIG) -> str:
    """Inject and return the commit the VPS runs."""
    return _injected(Target(ip, 2222, host_key, pair.private_openssh), config).commit


def _machine(sim: SimulatorServer, adapter: HetznerAdapter) -> Vps:
    return next(v for v in [sim.vps(s.id) for s in adapter.list_managed()] if v)


def test_inject_writes_both_files_as_the_user_and_starts_rachel8(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 1)
    machine = _machine(sim, adapter)
    commit = _inject(ip, host_key, pair)
    assert commit == machine.fs.real(LAYOUT.git_head_path, "/").read_text().strip()
    uid, gid = rachel8_vps.user_ids(machine)
    assert rachel8_vps.read(machine, LAYOUT.env_path).text == CONFIG.env(LAYOUT)
    credentials = rachel8_vps.read(machine, LAYOUT.credentials_path)
    assert credentials.text == CONFIG.credentials.document()
    for path in (LAYOUT.env_path, LAYOUT.credentials_path, LAYOUT.claude_dir):
        written = rachel8_vps.read(machine, path) if path != LAYOUT.claude_dir else None
        owner = machine.fs.owners.get(path)
        assert (owner[0], owner[1]) == (uid, gid), path
        if written is not None:
            assert written.mode == 0o600, path
    claude_dir = machine.fs.real(LAYOUT.claude_dir, "/")
    assert stat.S_IMODE(claude_dir.stat().st_mode) == 0o700
    assert sorted(os.listdir(claude_dir)) == [".credentials.json"], "no temp file left"
    assert not [n for n in os.listdir(machine.fs.real(LAYOUT.clone_dir, "/")) if n.endswith(".tmp")]
    unit = rachel8_vps.service(machine)
    assert (unit["ActiveState"], unit["SubState"]) == ("active", "running")
    # A second injection replaces .env in place.
    other = Rachel8Config("87654321:" + "N" * 35, 7, CONFIG.credentials)
    _inject(ip, host_key, pair, other)
    assert rachel8_vps.env(machine)["TELEGRAM_BOT_TOKEN"] == "87654321:" + "N" * 35


def _over_sftp(target: Target, path: str) -> tuple[str, int, int, int]:
    """A file on the VPS as SFTP shows it: (text, mode, uid, gid)."""
    client = connect(target, timeout=10)
    try:
        transport = client.get_transport()
        assert transport is not None
        sftp = SecretsSFTP.from_transport(transport)
        assert sftp is not None
        attrs = sftp.stat(path)
        with sftp.open(path, "r") as handle:
            text = handle.read().decode()
        assert attrs.st_mode is not None and attrs.st_uid is not None and attrs.st_gid is not None
        return text, stat.S_IMODE(attrs.st_mode), attrs.st_uid, attrs.st_gid
    finally:
        client.close()


def _systemctl(target: Target, *words: str) -> tuple[int, str]:
    client = connect(target, timeout=10)
    try:
        status, out, _ = run(client, " ".join(("systemctl", *words)), 10)
        return status, out
    finally:
        client.close()


def test_inject_gives_the_agent_its_credential_and_starts_its_timer(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 9)
    machine = _machine(sim, adapter)
    target = Target(ip, 2222, host_key, pair.private_openssh)
    assert _systemctl(target, "is-enabled", vps.AGENT_TIMER_UNIT)[0] != 0  # not at first boot
    injected = _injected(target)
    assert injected.agent_error is None
    text, mode, uid, gid = _over_sftp(target, vps.AGENT_ENV_PATH)
    assert (mode, uid, gid) == (0o600, 0, 0)
    assert text == (
        "RACHEL_HEARTBEAT_URL=https://cp.example.com/heartbeats/1\n"
        "RACHEL_HEARTBEAT_CREDENTIAL=planted-heartbeat-credential-0123456789\n"
        "RACHEL_TELEGRAM_API_URL=https://api.telegram.example\n"
    )
    directory = machine.fs.real(posixpath.dirname(vps.AGENT_ENV_PATH), "/")
    assert not [n for n in os.listdir(directory) if n.endswith(".tmp")], "no temp file left"
    assert _systemctl(target, "is-enabled", vps.AGENT_TIMER_UNIT) == (0, "enabled")
    assert _systemctl(target, "is-active", vps.AGENT_TIMER_UNIT) == (0, "active")
    # A re-injection gives a new credential, in place.
    renewed = AgentConfig(AGENT.heartbeat_url, "another-credential", AGENT.telegram_api_url)
    assert _injected(target, agent=renewed).agent_error is None
    text, mode, _, _ = _over_sftp(target, vps.AGENT_ENV_PATH)
    assert "RACHEL_HEARTBEAT_CREDENTIAL=another-credential\n" in text and mode == 0o600
    assert AGENT.credential not in text


def test_a_vps_without_the_agent_still_gets_rachel8_and_says_why_no_heartbeats(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 10, with_agent=False)
    target = Target(ip, 2222, host_key, pair.private_openssh)
    injected = _injected(target)
    assert injected.state.running
    assert injected.agent_error is not None
    assert f"systemctl enable --now {vps.AGENT_TIMER_UNIT}" in injected.agent_error
    assert "does not exist" in injected.agent_error
    assert AGENT.credential not in injected.agent_error


def test_newer_credentials_on_the_vps_are_kept_and_older_ones_replaced(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 5)
    machine = _machine(sim, adapter)
    _inject(ip, host_key, pair)
    # The VPS's CLI refreshed its token: a later expiry than ours.
    refreshed = ClaudeCredentials(
        "sk-ant-oat01-refreshed", "sk-ant-ort01-rotated", CONFIG.credentials.expires_at_ms + 1
    )
    path = machine.fs.real(LAYOUT.credentials_path, "/")
    path.write_text(refreshed.document())
    target = Target(ip, 2222, host_key, pair.private_openssh)
    injected = _injected(target)
    assert injected.kept_vps_credentials
    assert parse_credentials_document(path.read_text(), now_ms=None) == refreshed
    # A customer who signs in again gives us credentials later than the VPS's.
    newer = Rachel8Config(
        CONFIG.bot_token,
        CONFIG.owner_id,
        ClaudeCredentials("sk-ant-oat01-new", "sk-ant-ort01-new", refreshed.expires_at_ms + 1),
    )
    assert not _injected(target, newer).kept_vps_credentials
    assert path.read_text() == newer.credentials.document()
    # An unreadable document on the VPS is replaced.
    path.write_text("{not json")
    assert not _injected(target).kept_vps_credentials
    assert path.read_text() == CONFIG.credentials.document()


def test_a_vps_without_the_install_is_refused_without_writing(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 8)
    machine = _machine(sim, adapter)
    other = vps.Layout("nobody")  # a user the install did not create
    with pytest.raises(SSHError) as info:
        inject(
            Target(ip, 2222, host_key, pair.private_openssh),
            CONFIG,
            agent=AGENT,
            layout=other,
            timeout=10,
        )
    assert info.value.code == "vps_contract" and not info.value.transient
    assert "/home/nobody" in str(info.value)
    assert not machine.fs.real(LAYOUT.env_path, "/").exists()
    assert not machine.fs.real(vps.AGENT_ENV_PATH, "/").exists()


def test_the_temp_file_is_created_with_its_mode_and_never_reused(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 7)
    machine = _machine(sim, adapter)
    client = connect(Target(ip, 2222, host_key, pair.private_openssh), timeout=10)
    try:
        transport = client.get_transport()
        assert transport is not None
        sftp = SecretsSFTP.from_transport(transport)
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
    client = connect(Target(ip, 2222, host_key, pair.private_openssh), timeout=10)
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
        _injected(Target(ip, 2222, impostor, pair.private_openssh))
    assert info.value.code == "host_key_mismatch" and not info.value.transient


def test_a_key_the_vps_does_not_know_is_refused(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    _, ip, host_key = boot(sim, adapter, 3)
    stranger = generate_ssh_keypair().private_openssh
    with pytest.raises(SSHError) as info:
        _injected(Target(ip, 2222, host_key, stranger))
    assert info.value.code == "ssh_auth_failed" and not info.value.transient


def test_refused_ssh_is_transient(sim: SimulatorServer, adapter: HetznerAdapter) -> None:
    sim.set_faults({"ssh_refuse": 1.0})
    pair = generate_ssh_keypair()
    target = Target("127.0.0.1", _closed_port(), pair.public_openssh, pair.private_openssh)
    with pytest.raises(SSHError) as info:
        inject(target, CONFIG, agent=AGENT, layout=LAYOUT, timeout=3)
    assert info.value.code == "ssh_unreachable" and info.value.transient


def test_missing_unit_fails_the_service_start(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    pair, ip, host_key = boot(sim, adapter, 4, with_unit=False)
    with pytest.raises(SSHError) as info:
        _inject(ip, host_key, pair)
    assert info.value.code == "service_failed" and not info.value.transient
    assert "planted" not in str(info.value)


class _FullDisk(asyncssh.SFTPServer):
    """An SFTP server on a disk with no room left: every write fails.

    Its files are root's on the host; the home reports the Rachel8 user's ids,
    as a real VPS's would.
    """

    def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        attrs = asyncssh.SFTPAttrs.from_local(os.stat(self.map_path(path)))
        attrs.uid = attrs.gid = 1000
        return attrs

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        raise asyncssh.SFTPFailure("No space left on device")


COMMIT = "63f162e9302a66344772ab23653789f701c7bcf9"


@pytest.fixture
def full_disk_vps(tmp_path: Path) -> Iterator[tuple[Path, int, str, SSHKeyPair]]:
    """A real SSH server on loopback whose disk is full; yields (root, port, host key, our key)."""
    root = tmp_path / "vps"
    head = root / LAYOUT.git_head_path.lstrip("/")
    head.parent.mkdir(parents=True)
    head.write_text(COMMIT + "\n")
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


def test_a_failed_write_keeps_the_old_configuration_and_leaves_no_temp_file(
    full_disk_vps: tuple[Path, int, str, SSHKeyPair],
) -> None:
    root, port, host_key, ours = full_disk_vps
    env_file = root / LAYOUT.env_path.lstrip("/")
    env_file.write_text("TELEGRAM_BOT_TOKEN=the-old-one\n")
    target = Target("127.0.0.1", port, host_key, ours.private_openssh)
    with pytest.raises(SSHError) as info:
        _injected(target)
    assert info.value.code == "sftp_failed" and info.value.transient
    assert "No space left" in str(info.value) and "planted" not in str(info.value)
    assert env_file.read_text() == "TELEGRAM_BOT_TOKEN=the-old-one\n"
    assert sorted(p.name for p in env_file.parent.iterdir()) == [".env", ".git"], "no temp file"
