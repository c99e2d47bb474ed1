"""Where simulated VPSs keep their roots: a locked scratch directory per simulator."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import hcloud
import pytest
from hcloud.images import Image
from hcloud.server_types import ServerType

from sim.config import SimConfig
from sim.scratch import Scratch, ScratchError, check_parent, ram_backed_dir, sweep_stale
from sim.server import SimulatorServer
from sim.settings import SimSettings
from tests.sim.conftest import REPO_ROOT, fast_client, free_port
from tests.sim.helpers import key_pair, user_data, wait_for


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def held_lock(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Lock a scratch directory from another open file, as another simulator would."""
    fds: list[int] = []

    def hold(directory: Path) -> None:
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fds.append(fd)

    yield hold
    for fd in fds:
        os.close(fd)


def test_ram_backed_dir_needs_room_and_write_access(tmp_path: Path) -> None:
    assert ram_backed_dir((tmp_path / "missing", tmp_path), min_free=1) == tmp_path
    assert ram_backed_dir((tmp_path,), min_free=1 << 62) is None
    assert ram_backed_dir((tmp_path / "missing",), min_free=1) is None


def test_scratch_is_private_locked_and_named_after_its_process(tmp_path: Path) -> None:
    scratch = Scratch.make(tmp_path / "parent")
    assert scratch.path.parent == tmp_path / "parent"
    assert scratch.path.name.startswith(f"rachel-sim-{os.getpid()}-")
    assert scratch.path.stat().st_mode & 0o777 == 0o700
    assert sweep_stale(tmp_path / "parent") == []  # held: never swept, even by its own process
    scratch.remove()
    assert not scratch.path.exists()
    scratch.remove()  # idempotent


def test_the_sweep_goes_by_the_lock_not_the_process_id(
    tmp_path: Path, held_lock: Callable[[Path], None]
) -> None:
    # Held by a simulator whose pid this process cannot see (another container).
    held = tmp_path / f"rachel-sim-{_dead_pid()}-held"
    held.mkdir()
    held_lock(held)
    # Unlocked, though a process with that id runs (a reused pid).
    abandoned = tmp_path / f"rachel-sim-{os.getppid()}-abandoned"
    (abandoned / "rachel-sim-vps-1-x/etc").mkdir(parents=True)
    (abandoned / ".lock").touch()
    assert sweep_stale(tmp_path) == [abandoned]
    assert held.is_dir() and not abandoned.exists()


def test_a_directory_without_a_lock_goes_by_its_process_id(tmp_path: Path) -> None:
    dead = tmp_path / f"rachel-sim-{_dead_pid()}-dead"
    dead.mkdir()
    alive = tmp_path / f"rachel-sim-{os.getppid()}-alive"
    alive.mkdir()
    unrelated = tmp_path / "rachel-sim-vps-7-ghi"  # a VPS root made straight in vps_dir
    unrelated.mkdir()
    assert sweep_stale(tmp_path) == [dead]
    assert alive.is_dir() and unrelated.is_dir()


def test_an_unusable_parent_is_a_clear_error(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(ScratchError, match=f"cannot make the VPS directory in {not_a_dir}"):
        check_parent(not_a_dir)
    check_parent(tmp_path / "new" / "parent")  # made when missing
    assert list((tmp_path / "new" / "parent").iterdir()) == []


def test_settings_choose_the_scratch_parent(tmp_path: Path) -> None:
    settings = SimSettings.load({"RACHEL_SIM_VPS_DIR": str(tmp_path)}, env_file=None)
    config = SimConfig.from_settings(settings)
    assert config.vps_parent == tmp_path and config.vps_dir is None
    assert SimConfig.from_settings(SimSettings.load({}, env_file=None)).vps_parent is None


def test_sim_command_refuses_an_unusable_vps_dir(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    environ = {k: v for k, v in os.environ.items() if k != "HCLOUD_TOKEN"}
    environ.update({"RACHEL_SIM_VPS_DIR": str(not_a_dir), "RACHEL_SIM_SSH_PORT": str(free_port())})
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "sim", "--port", str(free_port())],
        cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "RACHEL_SIM_VPS_DIR: cannot make the VPS directory in" in done.stderr
    assert "Traceback" not in done.stderr


def _create(client: hcloud.Client, name: str) -> hcloud.servers.BoundServer:
    return client.servers.create(
        name, server_type=ServerType(name="cx23"), image=Image(name="debian-12"),
        user_data=user_data(root_keys=[key_pair().public]),
    ).server  # fmt: skip


def test_simulator_keeps_vps_roots_in_its_scratch_and_removes_it(
    make_sim: Callable[..., SimulatorServer], tmp_path: Path
) -> None:
    parent = tmp_path / "ram"
    sim = make_sim(vps_dir=None, vps_parent=parent)
    client: hcloud.Client = fast_client(sim)
    server = _create(client, "scratch")
    vps = wait_for(lambda: sim.vps(server.id), what="the VPS")
    (scratch,) = parent.iterdir()
    assert vps.root.parent == scratch and (vps.root / "etc/ssh").is_dir()

    client.servers.delete(server).wait_until_finished()
    wait_for(lambda: not vps.root.exists(), what="the VPS root removed")
    assert scratch.is_dir()  # kept for the next server
    sim.stop()
    assert list(parent.iterdir()) == []


def test_a_vps_that_cannot_be_made_fails_its_create_action(
    make_sim: Callable[..., SimulatorServer], tmp_path: Path
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    sim = make_sim(vps_dir=None, vps_parent=not_a_dir)
    client: hcloud.Client = fast_client(sim)
    server = _create(client, "no-disk")
    action = wait_for(
        lambda: next(
            (a for a in client.servers.get_actions_list(server).actions if a.status == "error"),
            None,
        ),
        what="the failed create action",
    )
    assert action.error is not None and "cannot make the VPS directory" in action.error["message"]
    assert client.servers.get_by_id(server.id).status == "off"
    assert sim.vps(server.id) is None
