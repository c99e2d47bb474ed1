"""Snapshot images on the simulator: what they hold, servers made from them, their
timings, the lock while one is made, and the bad input Hetzner refuses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hcloud
import yaml
from hcloud.images import Image
from hcloud.server_types import ServerType

from core.cloud import vps_contract as contract
from sim.rachel8 import CURRENT_COMMIT
from sim.server import SimulatorServer
from tests.sim.conftest import OpenApi, fast_client
from tests.sim.helpers import CallbackReceiver, key_pair, wait_for
from tests.sim.rachel8_data import LAYOUT, user_data
from tests.sim.test_sdk_roundtrip import api_error

MakeSim = Callable[..., SimulatorServer]
#: The issue's benchmark timings (simulated seconds), at a thousandth of a second each.
TIMINGS: dict[str, Any] = {
    "time_scale": 0.001,
    "create_seconds": 10,
    "boot_seconds": 20,
    "cloud_init_seconds": 10,
    "install_seconds": 180,
}


def per_server_user_data(callback_url: str, root_key: str, *, install: bool = False) -> str:
    """The per-server part only: root's key, the bootstrap env, the bootstrap (and the
    install, `install`: a stock user data's runcmd run on a snapshot's disk)."""
    document: dict[str, Any] = {
        "users": [{"name": "root", "ssh_authorized_keys": [root_key]}],
        "write_files": [
            {
                "path": contract.BOOTSTRAP_ENV_PATH,
                "permissions": "0600",
                "content": f"RACHEL_CALLBACK_URL={callback_url}\nRACHEL_CALLBACK_TOKEN=new\n",
            }
        ],
        "runcmd": [[contract.BOOTSTRAP_SCRIPT_PATH]],
    }
    if install:
        document["runcmd"].insert(0, [contract.INSTALL_SCRIPT_PATH])
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False)


def _callback(receiver: CallbackReceiver, server_id: int, sim: SimulatorServer) -> dict[str, Any]:
    vps = wait_for(lambda: sim.vps(server_id), what="the VPS")
    wait_for(lambda: vps.callback.succeeded, what=f"server {server_id}'s callback")
    return next(c.body for c in receiver.calls if c.client_ip == vps.ip)


def _snapshot(client: hcloud.Client, server_id: int, **labels: str) -> int:
    server = client.servers.get_by_id(server_id)
    client.servers.shutdown(server).wait_until_finished()
    made = client.servers.create_image(server, labels=labels)
    made.action.wait_until_finished()
    return int(made.image.id)


def test_a_server_from_a_snapshot_starts_with_the_installed_release(
    make_sim: MakeSim, openapi: OpenApi
) -> None:
    sim = make_sim(**TIMINGS)
    client = fast_client(sim, openapi)
    receiver = CallbackReceiver()
    try:
        builder = client.servers.create(
            "builder", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
            user_data=user_data(callback_url=receiver.url("/builder")),
        )  # fmt: skip
        built = _callback(receiver, builder.server.id, sim)
        assert built["install"]["ok"] and built["install"]["commit"] == CURRENT_COMMIT
        source = sim.vps(builder.server.id)
        assert source is not None
        image_id = _snapshot(client, builder.server.id, commit=CURRENT_COMMIT[:12])
        # Changes after the snapshot, and deleting its server, leave the image as it was.
        source.fs.write("/etc/after-the-snapshot", b"x\n", 0o644)
        client.servers.delete(builder.server).wait_until_finished()

        keys = key_pair()
        copy = client.servers.create(
            "from-snapshot", server_type=ServerType(name="cx23"), image=Image(id=image_id),
            user_data=per_server_user_data(receiver.url("/copy"), keys.public),
        )  # fmt: skip
        called = _callback(receiver, copy.server.id, sim)
        vps = sim.vps(copy.server.id)
        assert vps is not None and vps.from_image
        # The image's files, owners, user, unit and packages; a host key of its own.
        rachel = vps.fs.accounts.get(LAYOUT.user)
        assert rachel is not None and (rachel.uid, rachel.gid) == (1000, 1000)
        head = vps.root / LAYOUT.git_head_path.lstrip("/")
        assert head.read_text().strip() == CURRENT_COMMIT
        assert vps.fs.owners.get(LAYOUT.bun_path) == (1000, 1000)
        assert vps.systemd.unit_file_state(contract.SERVICE_UNIT) == "enabled"
        assert set(contract.PACKAGES) <= set(vps.packages)
        assert not (vps.root / "etc/after-the-snapshot").exists()
        assert called["host_key"] != built["host_key"]
        # No install ran: the callback reports the image's install, and cost no install time.
        assert called["install"]["commit"] == CURRENT_COMMIT
        assert vps.install_result is None and not vps.cloud_config_errors
        timings = sim.stats()["servers"][str(copy.server.id)]
        assert (timings["image"], timings["install"]) == ("snapshot", 0)
        assert sim.stats()["servers"][str(builder.server.id)]["install"] == 180
        # The enabled unit started at boot and, without .env, exited with Rachel8's hint.
        assert vps.systemd.active_state(contract.SERVICE_UNIT) == "inactive"
        assert vps.systemd.journal(contract.SERVICE_UNIT)
    finally:
        receiver.close()


def test_the_stock_install_run_again_on_a_snapshot_finds_its_work_done(
    make_sim: MakeSim, openapi: OpenApi
) -> None:
    sim = make_sim(**TIMINGS)
    client = fast_client(sim, openapi)
    receiver = CallbackReceiver()
    try:
        stock = user_data(callback_url=receiver.url("/cb"))
        builder = client.servers.create(
            "builder", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
            user_data=stock,
        )  # fmt: skip
        _callback(receiver, builder.server.id, sim)
        image_id = _snapshot(client, builder.server.id)
        again = client.servers.create(
            "again", server_type=ServerType(name="cx33"), image=Image(id=image_id),
            user_data=stock,
        )  # fmt: skip
        called = _callback(receiver, again.server.id, sim)
        assert called["install"]["ok"] and called["install"]["commit"] == CURRENT_COMMIT
        vps = sim.vps(again.server.id)
        assert vps is not None and vps.install_result is not None  # it ran, idempotently
        assert not vps.cloud_config_errors  # the existing user is skipped, not an error
        assert sim.stats()["servers"][str(again.server.id)]["install"] == 0
    finally:
        receiver.close()


def test_per_server_user_data_on_a_stock_image_has_no_release(
    make_sim: MakeSim, openapi: OpenApi
) -> None:
    """Strict: the per-server part alone installs nothing; Rachel8 is not there to start."""
    sim = make_sim()
    client = fast_client(sim, openapi)
    receiver = CallbackReceiver()
    try:
        bare = client.servers.create(
            "bare", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
            user_data=per_server_user_data(receiver.url("/cb"), key_pair().public),
        )  # fmt: skip
        called = _callback(receiver, bare.server.id, sim)
        assert "install" not in called  # no install ran, no result to report
        vps = sim.vps(bare.server.id)
        assert vps is not None and vps.fs.accounts.get(LAYOUT.user) is None
        started = vps.systemd.systemctl(["start", contract.SERVICE_UNIT])
        assert started.exit_status != 0 and "not found" in started.stderr
    finally:
        receiver.close()


def test_a_leftover_bootstrap_env_calls_nobody_without_the_bootstrap(
    make_sim: MakeSim, openapi: OpenApi
) -> None:
    sim = make_sim()
    client = fast_client(sim, openapi)
    receiver = CallbackReceiver()
    try:
        builder = client.servers.create(
            "builder", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
            user_data=user_data(callback_url=receiver.url("/builder")),
        )  # fmt: skip
        _callback(receiver, builder.server.id, sim)
        image_id = _snapshot(client, builder.server.id)
        silent = client.servers.create(
            "silent", server_type=ServerType(name="cx23"), image=Image(id=image_id),
            user_data="#cloud-config\n{}\n",
        )  # fmt: skip
        vps = wait_for(lambda: sim.vps(silent.server.id), what="the VPS")
        wait_for(lambda: vps.cloud_init_done, what="cloud-init")
        assert vps.root.joinpath(contract.BOOTSTRAP_ENV_PATH.lstrip("/")).is_file()
        assert vps.callback.attempts == 0 and len(receiver.calls) == 1
    finally:
        receiver.close()


def test_a_server_being_imaged_is_locked(make_sim: MakeSim, openapi: OpenApi) -> None:
    sim = make_sim(time_scale=0.01, image_seconds=60)  # 0.6 s
    client = fast_client(sim, openapi)
    created = client.servers.create(
        "locked", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
    )
    created.action.wait_until_finished()
    server = created.server
    made = client.servers.create_image(server)
    assert client.servers.get_by_id(server.id).locked is True
    for call in (
        lambda: client.servers.power_on(server),
        lambda: client.servers.delete(server),
        lambda: client.servers.create_image(server),
        lambda: client.images.delete(made.image),
    ):
        assert api_error(call).code == "locked"
    cx23 = ServerType(name="cx23")
    early = api_error(lambda: client.servers.create("early", server_type=cx23, image=made.image))
    assert early.code == "invalid_input"  # not available yet
    made.action.wait_until_finished()
    assert client.servers.get_by_id(server.id).locked is False
    client.servers.delete(server).wait_until_finished()
    assert client.images.get_by_id(made.image.id).status == "available"


def test_no_image_of_a_server_still_being_created(
    make_sim: Callable[..., SimulatorServer],
) -> None:
    # A create that takes time: with zero timings it may end before the next request.
    client = fast_client(make_sim(create_seconds=0.5))
    made = client.servers.create(
        "new", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
    )
    assert api_error(lambda: client.servers.create_image(made.server)).code == "locked"


def test_image_bad_input(sim: SimulatorServer, client: hcloud.Client) -> None:
    big = client.servers.create(
        "big", server_type=ServerType(name="cpx22"), image=Image(name="debian-12")
    )
    big.action.wait_until_finished()
    made = client.servers.create_image(big.server, description="80 GB")
    made.action.wait_until_finished()
    # cpx22's 80 GB disk does not fit a cx23 (40 GB); cx43 (160 GB) takes it.
    cx23 = ServerType(name="cx23")
    small = api_error(lambda: client.servers.create("small", server_type=cx23, image=made.image))
    assert small.code == "invalid_input" and small.details["fields"][0]["name"] == "image"
    client.servers.create("large", server_type=ServerType(name="cx43"), image=made.image)
    for body in ({"type": "golden"}, {"labels": {"bad key!": "x"}}, {"description": 7}):
        error = api_error(
            lambda b=body: client.request(  # type: ignore[misc]
                "POST", f"/servers/{big.server.id}/actions/create_image", json=b
            )
        )
        assert error.code == "invalid_input", body
    bad_update = api_error(lambda: client.images.update(made.image, type="system"))
    assert bad_update.code == "invalid_input"
    client.servers.delete(big.server).wait_until_finished()
    gone = api_error(lambda: client.servers.create_image(big.server))
    assert gone.code == "not_found"  # create_image on a deleted server
    # The snapshot outlives its server.
    assert client.images.get_by_id(made.image.id).created_from.id == big.server.id


def test_deleting_an_image_removes_its_disk_copy(
    sim: SimulatorServer, client: hcloud.Client
) -> None:
    created = client.servers.create(
        "src", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
    )
    created.action.wait_until_finished()
    made = client.servers.create_image(created.server)
    made.action.wait_until_finished()
    disk = sim.simulator.store.images[made.image.id].disk
    assert disk is not None and disk.path.is_dir()
    client.images.delete(made.image)
    wait_for(lambda: not disk.path.exists(), what="the image's disk copy to go")
