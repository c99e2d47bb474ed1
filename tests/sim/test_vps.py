"""Simulated VPSs: the callback, paramiko over SSH and SFTP, systemctl."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Iterator

import hcloud
import paramiko
import pytest
import requests
from hcloud.images import Image
from hcloud.server_types import ServerType
from hcloud.ssh_keys import SSHKey

from core.cloud import vps_contract
from sim.server import SimulatorServer
from sim.vps import Vps
from tests.sim.conftest import fast_client
from tests.sim.helpers import CallbackReceiver, KeyPair, key_pair, user_data, wait_for


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver(fail_first=1)
    yield server
    server.close()


def connect(
    ip: str, port: int, key: KeyPair, host_key: str | None = None, user: str = "root"
) -> paramiko.SSHClient:
    """paramiko with RejectPolicy: the host key must be the pinned one."""
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    if host_key is not None:
        kind, blob = host_key.split()[:2]
        pinned = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
        client.get_host_keys().add(f"[{ip}]:{port}", kind, pinned)
    client.connect(
        ip, port=port, username=user, pkey=key.private, look_for_keys=False,
        allow_agent=False, timeout=5,
    )  # fmt: skip
    return client


def run(client: paramiko.SSHClient, command: str) -> tuple[int, str, str]:
    _, stdout, stderr = client.exec_command(command, timeout=5)
    status = stdout.channel.recv_exit_status()
    return status, stdout.read().decode(), stderr.read().decode()


def test_vps_callback_ssh_sftp_and_services(
    make_sim: Callable[..., SimulatorServer], receiver: CallbackReceiver
) -> None:
    sim = make_sim(create_seconds=0.05, boot_seconds=0.05, cloud_init_seconds=0.05)
    client = fast_client(sim)
    cloud_key, top_key, api_key, stranger = key_pair(), key_pair(), key_pair(), key_pair()
    hetzner_key = client.ssh_keys.create("api", api_key.public)
    created = client.servers.create(
        "vps-1",
        server_type=ServerType(name="cx23"),
        image=Image(name="debian-12"),
        ssh_keys=[SSHKey(id=hetzner_key.id)],
        user_data=user_data(
            callback_url=receiver.url("/callbacks/cloud-init/7"),
            root_keys=[cloud_key.public],
            top_level_keys=[top_key.public],
        ),
    )
    ip = created.server.public_net.ipv4.ip
    port = sim.config.ssh_port

    # The callback: after a 500 it retries, from the VPS's own address.
    calls = wait_for(lambda: len(receiver.calls) >= 2 and receiver.calls, what="the callback")
    call = calls[-1]
    assert call.path == "/callbacks/cloud-init/7"
    assert call.authorization == "Bearer one-time-token"
    assert call.client_ip == ip
    host_key = call.body["host_key"]
    assert host_key.startswith("ssh-ed25519 ")
    vps = sim.vps(created.server.id)
    assert vps is not None and host_key == vps.host_public_key
    assert (vps.root / vps_contract.HOST_KEY_PATH.lstrip("/")).read_text().strip() == host_key
    timings = wait_for(lambda: sim.stats()["servers"][str(created.server.id)]["cloud_init"])
    assert timings >= 0.05
    assert sim.stats()["servers"][str(created.server.id)]["callback_attempts"] == 2
    assert client.servers.get_by_id(created.server.id).status == "running"

    # Every source of keys logs in as root; the host key is the reported one.
    for key in (top_key, api_key):
        connect(ip, port, key, host_key).close()
    with pytest.raises(paramiko.AuthenticationException):
        connect(ip, port, stranger, host_key)
    ssh = connect(ip, port, cloud_key, host_key)
    try:
        assert run(ssh, "systemctl is-active rachel8") == (3, "inactive\n", "")
        status, _, err = run(ssh, "systemctl restart rachel8")
        assert status == 1 and "/etc/rachel8/secrets.env" in err
        assert run(ssh, "systemctl is-active rachel8.service")[:2] == (3, "failed\n")

        # Secrets over SFTP, atomically: temp file, chmod, rename.
        sftp = ssh.open_sftp()
        assert set(sftp.listdir("/")) == {"etc", "root", "tmp"}
        assert run(ssh, "mkdir -p /etc/rachel8")[0] == 0
        with sftp.open("/etc/rachel8/secrets.env.tmp", "w") as handle:
            handle.write("TELEGRAM_BOT_TOKEN=planted\n")
        sftp.chmod("/etc/rachel8/secrets.env.tmp", 0o600)
        sftp.posix_rename("/etc/rachel8/secrets.env.tmp", "/etc/rachel8/secrets.env")
        with pytest.raises(OSError):
            sftp.open("/../../etc/passwd")
        sftp.close()
        on_disk = vps.root / "etc/rachel8/secrets.env"
        assert on_disk.read_text() == "TELEGRAM_BOT_TOKEN=planted\n"

        assert run(ssh, f"stat -c %a {'/etc/rachel8/secrets.env'}") == (0, "600\n", "")
        assert run(ssh, "test -f /etc/rachel8/secrets.env && echo yes") == (0, "yes\n", "")
        assert run(ssh, "systemctl daemon-reload && systemctl restart rachel8") == (0, "", "")
        assert run(ssh, "systemctl is-active rachel8") == (0, "active\n", "")
        assert run(ssh, "cat /etc/rachel8/secrets.env")[1] == "TELEGRAM_BOT_TOKEN=planted\n"
        assert run(ssh, "ls /etc/rachel8") == (0, "secrets.env\n", "")
        assert run(ssh, "mv /etc/rachel8/secrets.env /tmp/s && true")[0] == 0
        assert run(ssh, "systemctl restart rachel8")[0] == 1  # its file is gone again

        # Confinement and honest failures.
        assert run(ssh, "cat /etc/passwd")[0] == 1
        assert run(ssh, "cat ../../../../etc/passwd")[0] == 1
        assert run(ssh, "systemctl restart nosuch")[0] == 5
        assert run(ssh, "systemctl is-active nosuch") == (3, "inactive\n", "")
        status, _, err = run(ssh, "curl https://example.com")
        assert status == 127 and "not found" in err
    finally:
        ssh.close()

    # Deleting the server takes the VPS away: SSH refuses and the root is gone.
    client.servers.delete(created.server).wait_until_finished()
    with pytest.raises(OSError), socket.create_connection((ip, port), timeout=2):
        pass
    assert not vps.root.exists()


def test_no_bootstrap_env_means_no_callback(
    make_sim: Callable[..., SimulatorServer], receiver: CallbackReceiver
) -> None:
    sim = make_sim()
    client: hcloud.Client = fast_client(sim)
    key = key_pair()
    created = client.servers.create(
        "quiet", server_type=ServerType(name="cx23"), image=Image(name="debian-12"),
        user_data=user_data(root_keys=[key.public]),
    )  # fmt: skip
    created.action.wait_until_finished()
    vps = wait_for(lambda: sim.vps(created.server.id), what="the VPS")
    wait_for(lambda: vps.ssh_listening and vps.cloud_init_done, what="SSH and cloud-init")
    connect(
        created.server.public_net.ipv4.ip, sim.config.ssh_port, key, vps.host_public_key
    ).close()
    assert receiver.calls == [] and vps.callback.attempts == 0


def test_ssh_connections_are_counted_per_vps_and_shown(
    make_sim: Callable[..., SimulatorServer], receiver: CallbackReceiver
) -> None:
    sim = make_sim()
    client: hcloud.Client = fast_client(sim)
    key, stranger = key_pair(), key_pair()

    def booted(name: str) -> Vps:
        made = client.servers.create(
            name,
            server_type=ServerType(name="cx23"),
            image=Image(name="debian-12"),
            user_data=user_data(root_keys=[key.public]),
        )
        vps: Vps = wait_for(lambda: sim.vps(made.server.id or 0), what="the VPS")
        wait_for(lambda: vps.ssh_listening and vps.cloud_init_done, what="SSH and cloud-init")
        return vps

    counted, alone = booted("counted"), booted("left-alone")
    assert counted.ssh_connections == alone.ssh_connections == 0
    port = sim.config.ssh_port
    connect(counted.ip, port, key, counted.host_public_key).close()
    with pytest.raises(paramiko.AuthenticationException):
        connect(counted.ip, port, stranger, counted.host_public_key)  # opened all the same
    with socket.create_connection((counted.ip, port), timeout=2) as sock:
        assert sock.recv(8).startswith(b"SSH-2.0")  # a bare TCP connect to the SSH server too
    wait_for(lambda: counted.ssh_connections == 3, what="three connections counted")
    listed = requests.get(
        f"{sim.url}/_sim/vps", headers={"Authorization": f"Bearer {sim.token}"}, timeout=5
    ).json()["vps"]
    shown = {v["name"]: v["ssh_connections"] for v in listed}
    assert shown == {"counted": 3, "left-alone": 0}
