"""A Rachel8 VPS end to end: the install reported in the callback, the injection's SFTP
steps answered as OpenSSH's sftp-server answers them, and systemd watched over SSH."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import asyncssh
import hcloud
import pytest
import requests
from hcloud.images import Image
from hcloud.server_types import ServerType

from core.cloud import vps_contract as contract
from sim.faults import Faults, InstallFault
from sim.rachel8 import CURRENT_COMMIT
from sim.server import SimulatorServer
from tests.sim.conftest import fast_client
from tests.sim.helpers import CallbackReceiver, wait_for
from tests.sim.rachel8_data import LAYOUT, credentials, env_text, user_data

PROPERTIES = " ".join(f"-p {p}" for p in contract.SERVICE_PROPERTIES)


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver()
    yield server
    server.close()


def _create(sim: SimulatorServer, name: str, text: str) -> int:
    client: hcloud.Client = fast_client(sim)
    created = client.servers.create(
        name, server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"), user_data=text
    )
    return created.server.id


async def _inject(ip: str, port: int, key: asyncssh.SSHKey) -> dict[str, Any]:
    """The injection's steps, as the control plane performs them."""
    seen: dict[str, Any] = {}
    async with asyncssh.connect(
        ip, port=port, username="root", client_keys=[key], known_hosts=None
    ) as conn, conn.start_sftp_client() as sftp:  # fmt: skip
        home = await sftp.stat(LAYOUT.home)
        # SFTP v3 (OpenSSH's) carries numeric ids only; names come in listings' longnames.
        seen["home"] = (home.uid, home.gid, home.permissions & 0o7777)
        uid, gid = home.uid, home.gid
        create = asyncssh.FXF_WRITE | asyncssh.FXF_CREAT | asyncssh.FXF_EXCL
        # OPEN's uid/gid are ignored (OpenSSH): the file is the session user's until chowned.
        temp = f"{LAYOUT.env_path}.tmp"
        async with sftp.open(
            temp, create, asyncssh.SFTPAttrs(permissions=0o600, uid=uid, gid=gid)
        ) as f:
            await f.write(env_text())
            before = await f.stat()
            seen["temp_before_chown"] = (before.uid, before.permissions & 0o7777)
            await f.chown(uid, gid)
        with pytest.raises(asyncssh.SFTPFailure):
            await sftp.open(temp, create)  # EXCL: it exists
        await sftp.posix_rename(temp, LAYOUT.env_path)
        env = await sftp.stat(LAYOUT.env_path)
        seen["env"] = (env.uid, env.gid, env.permissions & 0o7777)
        if not await sftp.exists(LAYOUT.claude_dir):
            await sftp.mkdir(LAYOUT.claude_dir, asyncssh.SFTPAttrs(permissions=0o700))
            await sftp.chown(LAYOUT.claude_dir, uid, gid)
        creds = f"{LAYOUT.credentials_path}.tmp"
        async with sftp.open(creds, create, asyncssh.SFTPAttrs(permissions=0o600)) as f:
            await f.write(credentials())
        await sftp.chown(creds, uid, gid)
        # The plain SSH_FXP_RENAME refuses to replace a file; posix-rename replaces it.
        await sftp.posix_rename(creds, LAYOUT.credentials_path)
        async with sftp.open(creds, create) as f:
            await f.write("{}")
        with pytest.raises(asyncssh.SFTPFailure):
            await sftp.rename(creds, LAYOUT.credentials_path)
        await sftp.remove(creds)
        async with sftp.open(LAYOUT.credentials_path) as f:
            seen["credentials"] = json.loads(await f.read())
        listing = {
            n.filename: (n.attrs.uid, n.longname) for n in await sftp.readdir(LAYOUT.claude_dir)
        }
        seen["listing"] = listing
        seen["stat_cmd"] = (await conn.run(f"stat -c '%u %U %G %a' {LAYOUT.env_path}")).stdout
        restarted = await conn.run(f"systemctl restart {contract.SERVICE_UNIT}")
        seen["restart"] = restarted.exit_status
        for _ in range(200):
            shown = await conn.run(f"systemctl show {contract.SERVICE_UNIT} {PROPERTIES}")
            props = dict(str(line).split("=", 1) for line in str(shown.stdout).splitlines())
            if props["SubState"] == "running" and props["ActiveState"] == "active":
                break
            await asyncio.sleep(0.01)
        seen["show"] = props
        for _ in range(200):  # Rachel8 says it runs once its start-up is over
            journal = await conn.run(f"journalctl -u {contract.SERVICE_UNIT} -n 3 --no-pager")
            seen["journal"] = str(journal.stdout)
            if "Rachel8 is running" in seen["journal"]:
                break
            await asyncio.sleep(0.01)
    return seen


def test_install_callback_injection_and_service_over_ssh(
    make_sim: Callable[..., SimulatorServer], receiver: CallbackReceiver
) -> None:
    sim = make_sim(time_scale=0.01)
    key = asyncssh.generate_private_key("ssh-ed25519")
    root_key = key.export_public_key().decode().strip()
    server_id = _create(
        sim, "rc-7", user_data(callback_url=receiver.url("/cb/7"), root_key=root_key)
    )
    call = wait_for(lambda: receiver.calls and receiver.calls[-1], what="the callback")
    install = call.body["install"]
    assert install["ok"] is True and install["commit"] == CURRENT_COMMIT
    assert call.body["host_key"].startswith("ssh-ed25519 ")

    vps = sim.vps(server_id)
    assert vps is not None
    seen = asyncio.run(_inject(vps.ip, sim.config.ssh_port, key))
    assert seen["home"] == (1000, 1000, 0o750)
    assert seen["temp_before_chown"] == (0, 0o600)
    assert seen["env"] == (1000, 1000, 0o600)
    assert seen["credentials"]["claudeAiOauth"]["refreshToken"].startswith("sk-ant-ort01-")
    assert set(seen["listing"]) == {".", "..", ".credentials.json"}
    assert seen["listing"][".credentials.json"][0] == 1000
    assert " rachel " in seen["listing"][".credentials.json"][1]
    assert seen["stat_cmd"] == "1000 rachel rachel 600\n"
    assert vps.fs.owners.get(LAYOUT.credentials_path) == (1000, 1000)
    assert vps.fs.owners.get(f"{LAYOUT.credentials_path}.tmp") == (0, 0)  # removed: no entry
    assert seen["restart"] == 0
    assert seen["show"] == {
        "ActiveState": "active", "SubState": "running", "NRestarts": "0",
        "Result": "success", "ExecMainStatus": "0",
    }  # fmt: skip
    assert "Rachel8 is running. Listening for messages..." in seen["journal"]

    listed = requests.get(
        f"{sim.url}/_sim/vps", headers={"Authorization": f"Bearer {sim.token}"}, timeout=5
    ).json()["vps"]
    shown = next(v for v in listed if v["server_id"] == server_id)
    assert shown["install"]["ok"] is True
    assert {"name": "rachel", "uid": 1000, "gid": 1000, "home": "/home/rachel",
            "shell": "/bin/bash", "sudo": False} in shown["users"]  # fmt: skip
    assert shown["rachel8"]["ActiveState"] == "active"
    assert shown["rachel8"]["NRestarts"] == "0"
    assert shown["rachel8"]["journal_tail"][-1] == "Rachel8 is running. Listening for messages..."


@pytest.mark.parametrize("step", [contract.STEP_CLONE, contract.STEP_DEPENDENCIES])
def test_an_install_fault_is_reported_in_the_callback(
    make_sim: Callable[..., SimulatorServer], receiver: CallbackReceiver, step: str
) -> None:
    sim = make_sim(faults=Faults(install_fail=InstallFault(step=step, names=["rc-bad-*"])))
    _create(sim, "rc-bad-1", user_data(callback_url=receiver.url("/cb/1")))
    _create(sim, "rc-good-2", user_data(callback_url=receiver.url("/cb/2")))
    wait_for(lambda: len(receiver.calls) == 2, what="both callbacks")
    installs = {c.path: c.body["install"] for c in receiver.calls}
    assert installs["/cb/1"]["ok"] is False and installs["/cb/1"]["failed_step"] == step
    assert installs["/cb/2"]["ok"] is True and installs["/cb/2"]["failed_step"] is None
