"""Updating Rachel8 on servers the pipeline deployed: the update edge over real SSH.

Real parts: servers deployed through the pipeline (cloud-init calling back to
the served web app, the SSH injection arming the health agent), the update
script's stages run by `core.cloud.vps_update` over SSH against the pinned
host key (the simulated VPS runs them as `sim.update`), and each VPS's agent
POSTing real heartbeats, which are what a switch is judged by here. Releases
come from the simulator's catalogue: a newer good one, and one per way a
release fails (`sim.rachel8.BAD_RELEASES`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import peewee
import pytest
import redis

from core.cloud import vps_contract as vps
from core.cloud import vps_update
from core.cloud.ssh import Target, connect, run
from core.domain.heartbeats import Heartbeat
from core.domain.vps_access import target_for
from core.security.crypto import generate_ssh_keypair
from core.store.models import Server
from sim import rachel8
from sim.rachel8 import BAD_RELEASES, CURRENT_COMMIT, NEWER_COMMIT
from sim.server import SimulatorServer
from sim.vps import Vps
from tests.pipeline import rachel8_vps
from tests.pipeline.fleet import Fleet, watched
from tests.pipeline.harness import WebServer, served_stack
from tests.pipeline.test_ssh_injection import _closed_port
from tests.stand_ins import Receiver

LAYOUT = rachel8_vps.LAYOUT
OLDER_COMMIT = "4303627f1cb709be417de6bc7da447987bba8dbc"


@pytest.fixture
def fleet(
    db: peewee.Database,
    sim: SimulatorServer,
    web: WebServer,
    redis_client: redis.Redis,
    redis_server_url: str,
    tmp_path: Path,
) -> Iterator[Fleet]:
    """Servers whose agents send a heartbeat every 0.6 s (60 s at the time scale of 0.01)."""
    env = {
        "RACHEL_BOOT_TIMEOUT": "8s",
        "RACHEL_HEARTBEAT_INTERVAL": "60s",
        "RACHEL_TELEGRAM_API_URL": f"{sim.url}/telegram",
    }
    receiver = Receiver()
    with (
        served_stack(tmp_path, redis_client, redis_server_url, sim, web, **env) as stack,
        watched(stack, receiver) as found,
    ):
        yield found
    receiver.close()


def _target(fleet: Fleet, server: Server) -> Target:
    found = target_for(fleet.row(server), fleet.stack.ring, fleet.stack.settings)
    assert found is not None
    return found


def _machine(fleet: Fleet, server: Server) -> Vps:
    machine = fleet.stack.sim.vps(fleet.row(server).provider_id or 0)
    assert machine is not None
    return machine


def _prepare(target: Target, commit: str) -> vps_update.StageResult:
    return vps_update.prepare(target, commit, layout=LAYOUT, timeout=10)


def _switch(target: Target, commit: str) -> vps_update.StageResult:
    return vps_update.switch(target, commit, layout=LAYOUT, timeout=10)


def _update(target: Target, commit: str) -> vps_update.StageResult:
    prepared = _prepare(target, commit)
    assert prepared.ok, prepared.describe()
    switched = _switch(target, commit)
    assert switched.ok, switched.describe()
    return switched


def _linked(machine: Vps) -> str:
    return machine.fs.real(LAYOUT.clone_dir, "/").readlink().name


def _heartbeat_until(
    fleet: Fleet, server: Server, holds: Callable[[Heartbeat], bool], what: str
) -> Heartbeat:
    """The first heartbeat from now on for which `holds` is true."""
    for _ in range(40):
        beat = fleet.fresh_heartbeat(server).heartbeat
        if holds(beat):
            return beat
    raise AssertionError(f"no heartbeat of server {server.id} showed {what}")


def test_a_good_release_prepared_switched_back_and_pruned(fleet: Fleet) -> None:
    (server,) = fleet.deploy()
    target, machine = _target(fleet, server), _machine(fleet, server)
    uid, gid = rachel8_vps.user_ids(machine)

    prepared = _prepare(target, NEWER_COMMIT)
    assert prepared.ok and (prepared.commit, prepared.previous) == (NEWER_COMMIT, CURRENT_COMMIT)
    env = rachel8_vps.read(machine, f"{LAYOUT.release_dir(NEWER_COMMIT)}/.env")
    assert (env.mode, env.uid, env.gid) == (vps.SECRET_MODE, uid, gid)
    assert env.text == rachel8_vps.read(machine, LAYOUT.env_path).text
    assert _linked(machine) == CURRENT_COMMIT, "prepare switches nothing"
    again = _prepare(target, NEWER_COMMIT)
    assert again.ok and again.log_tail.endswith("prepared already\n")
    script = rachel8_vps.read(machine, vps.UPDATE_SCRIPT_PATH)
    assert (script.mode, script.uid) == (vps.UPDATE_SCRIPT_MODE, 0)

    switched = _switch(target, NEWER_COMMIT)
    assert switched.previous == CURRENT_COMMIT
    assert switched.service is not None and switched.service.running
    assert _linked(machine) == NEWER_COMMIT
    beat = _heartbeat_until(fleet, server, lambda b: b.commit == NEWER_COMMIT, "the new commit")
    assert beat.service is not None and beat.service.running
    assert beat.telegram.get_me == "ok" and beat.telegram.webhook_set is False
    restarts = rachel8_vps.service(machine)["NRestarts"], len(rachel8_vps.journal(machine))
    same = _switch(target, NEWER_COMMIT)
    assert same.ok and (same.commit, same.previous) == (NEWER_COMMIT, NEWER_COMMIT)
    assert not any("Stopping" in line for line in rachel8_vps.journal(machine)[restarts[1] :])

    back = _switch(target, CURRENT_COMMIT)
    assert back.ok and back.previous == NEWER_COMMIT
    _heartbeat_until(fleet, server, lambda b: b.commit == CURRENT_COMMIT, "the old commit")

    assert _prepare(target, OLDER_COMMIT).ok
    pruned = vps_update.prune(target, 2, layout=LAYOUT, timeout=10)
    assert pruned.ok and pruned.removed == (OLDER_COMMIT,)
    assert (pruned.commit, pruned.previous) == (CURRENT_COMMIT, NEWER_COMMIT)
    left = machine.fs.real(LAYOUT.releases_dir, "/").iterdir()
    assert sorted(p.name for p in left) == sorted([CURRENT_COMMIT, NEWER_COMMIT])


def test_each_bad_release_fails_as_the_heartbeats_tell_and_switching_back_heals(
    fleet: Fleet,
) -> None:
    (server,) = fleet.deploy()
    target, machine = _target(fleet, server), _machine(fleet, server)

    # The install fails: prepare says where, and nothing switched.
    broken = _prepare(target, BAD_RELEASES[rachel8.INSTALL_FAILS].commit)
    assert (broken.ok, broken.failed_step, broken.exit_status) == (False, "dependencies", 1)
    assert "lockfile had changes" in broken.log_tail
    assert _linked(machine) == CURRENT_COMMIT

    # Crashes at start: systemd restarts it until its start limit.
    _update(target, BAD_RELEASES[rachel8.CRASH_AT_START].commit)
    _heartbeat_until(
        fleet, server, lambda b: b.service is not None and b.service.result == "start-limit-hit",
        "the unit failed at its start limit",
    )  # fmt: skip
    _update(target, CURRENT_COMMIT)
    healed = _heartbeat_until(fleet, server, lambda b: b.commit == CURRENT_COMMIT, "the old one")
    assert healed.service is not None and healed.service.running and healed.service.restarts == 0

    # Runs, then crashes a simulated minute after each start.
    later = BAD_RELEASES[rachel8.CRASH_LATER].commit
    switched = _update(target, later)
    assert switched.service is not None and switched.service.running
    beat = _heartbeat_until(fleet, server, lambda b: b.commit == later, "the crashing release")
    assert beat.service is not None and beat.service.restarts == 0
    _heartbeat_until(
        fleet, server, lambda b: b.service is not None and b.service.restarts >= 1, "a restart"
    )
    assert any("Maximum call stack" in line for line in rachel8_vps.journal(machine))

    # Runs, but sets a webhook: Telegram stops serving its polling.
    _update(target, BAD_RELEASES[rachel8.POLLING_FAILS].commit)
    webhook = _heartbeat_until(fleet, server, lambda b: b.telegram.webhook_set is True, "webhook")
    assert webhook.service is not None and webhook.service.running
    _update(target, CURRENT_COMMIT)
    _heartbeat_until(fleet, server, lambda b: b.telegram.webhook_set is False, "no webhook")


def test_an_unknown_commit_fails_the_clone(fleet: Fleet) -> None:
    (server,) = fleet.deploy()
    unknown = "0123456789abcdef0123456789abcdef01234567"
    result = _prepare(_target(fleet, server), unknown)
    assert (result.ok, result.failed_step, result.exit_status) == (False, "clone", 128)
    assert f"fatal: reference is not a tree: {unknown}" in result.log_tail

    # A script the control plane did not upload as the contract says is refused.
    target, machine = _target(fleet, server), _machine(fleet, server)
    script = machine.fs.real(vps.UPDATE_SCRIPT_PATH, "/")
    client = connect(target, 10)
    try:
        script.chmod(0o755)
        status, out, err = run(client, f"{vps.UPDATE_SCRIPT_PATH} prune 2", 10)
        assert (status, out) == (126, "") and "must be root's with mode 0700" in err
        script.unlink()
        status, out, err = run(client, f"{vps.UPDATE_SCRIPT_PATH} prune 2", 10)
        assert (status, out) == (127, "") and "not found" in err
    finally:
        client.close()
    # The edge uploads it again with every stage.
    assert vps_update.prune(target, 2, layout=LAYOUT, timeout=10).ok


def test_an_unreachable_vps_is_a_transient_error() -> None:
    pair = generate_ssh_keypair()
    target = Target("127.0.0.1", _closed_port(), pair.public_openssh, pair.private_openssh)
    with pytest.raises(vps_update.VpsUpdateError) as info:
        vps_update.switch(target, CURRENT_COMMIT, layout=LAYOUT, timeout=3)
    assert info.value.code == "vps_unreachable" and info.value.transient
    with pytest.raises(ValueError, match="not a full commit id"):
        vps_update.switch(target, "main", layout=LAYOUT)
