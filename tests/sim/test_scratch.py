"""Where simulated VPSs keep their roots: a scratch directory per simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import hcloud
from hcloud.images import Image
from hcloud.server_types import ServerType

from core.settings import Settings
from sim.config import SimConfig
from sim.scratch import make_scratch, ram_backed_dir, sweep_stale
from sim.server import SimulatorServer
from tests.sim.conftest import fast_client
from tests.sim.helpers import key_pair, user_data, wait_for


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_ram_backed_dir_needs_room_and_write_access(tmp_path: Path) -> None:
    assert ram_backed_dir((tmp_path / "missing", tmp_path), min_free=1) == tmp_path
    assert ram_backed_dir((tmp_path,), min_free=1 << 62) is None
    assert ram_backed_dir((tmp_path / "missing",), min_free=1) is None


def test_scratch_is_private_and_named_after_its_process(tmp_path: Path) -> None:
    scratch = make_scratch(tmp_path / "parent")
    assert scratch.parent == tmp_path / "parent"
    assert scratch.name.startswith(f"rachel-sim-{os.getpid()}-")
    assert scratch.stat().st_mode & 0o777 == 0o700


def test_scratch_left_by_a_dead_simulator_is_swept(tmp_path: Path) -> None:
    dead = tmp_path / f"rachel-sim-{_dead_pid()}-abc"
    (dead / "rachel-sim-vps-1-x/etc").mkdir(parents=True)
    alive = tmp_path / f"rachel-sim-{os.getppid()}-def"
    alive.mkdir()
    unrelated = tmp_path / "rachel-sim-vps-7-ghi"  # a VPS root made straight in vps_dir
    unrelated.mkdir()
    ours = make_scratch(tmp_path)
    assert not dead.exists()
    assert alive.is_dir() and unrelated.is_dir() and ours.is_dir()
    assert sweep_stale(tmp_path) == []


def test_settings_choose_the_scratch_parent(tmp_path: Path) -> None:
    settings = Settings.load({"RACHEL_SIM_VPS_DIR": str(tmp_path)}, env_file=None)
    config = SimConfig.from_settings(settings)
    assert config.vps_parent == tmp_path and config.vps_dir is None
    assert SimConfig.from_settings(Settings.load({}, env_file=None)).vps_parent is None


def test_simulator_keeps_vps_roots_in_its_scratch_and_removes_it(
    make_sim: Callable[..., SimulatorServer], tmp_path: Path
) -> None:
    parent = tmp_path / "ram"
    sim = make_sim(vps_dir=None, vps_parent=parent)
    client: hcloud.Client = fast_client(sim)
    created = client.servers.create(
        "scratch", server_type=ServerType(name="cx23"), image=Image(name="debian-12"),
        user_data=user_data(root_keys=[key_pair().public]),
    )  # fmt: skip
    vps = wait_for(lambda: sim.vps(created.server.id), what="the VPS")
    (scratch,) = parent.iterdir()
    assert vps.root.parent == scratch and (vps.root / "etc/ssh").is_dir()

    client.servers.delete(created.server).wait_until_finished()
    wait_for(lambda: not vps.root.exists(), what="the VPS root removed")
    assert scratch.is_dir()  # kept for the next server
    sim.stop()
    assert list(parent.iterdir()) == []
