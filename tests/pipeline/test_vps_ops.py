"""The health probe, repairs and operator reads on a simulated VPS (real SSH on loopback)."""

from __future__ import annotations

import pytest

from core.cloud import vps_contract as vps
from core.cloud import vps_ops
from core.cloud.hetzner import HetznerAdapter
from core.cloud.ssh import SSHError, Target
from core.security.crypto import generate_ssh_keypair
from sim.server import SimulatorServer
from tests.pipeline import rachel8_vps
from tests.pipeline.test_ssh_injection import _closed_port, _inject, _machine, boot


def _ready(sim: SimulatorServer, adapter: HetznerAdapter, server_id: int) -> Target:
    pair, ip, host_key = boot(sim, adapter, server_id)
    _inject(ip, host_key, pair)
    return Target(ip, 2222, host_key, pair.private_openssh)


def test_a_probe_sees_rachel8_running(sim: SimulatorServer, adapter: HetznerAdapter) -> None:
    target = _ready(sim, adapter, 31)
    found = vps_ops.probe(target, timeout=10)
    assert found.reachable and found.error is None
    assert found.service is not None and found.service.running
    assert "Rachel8 active/running" in found.describe()


def test_a_probe_tells_a_down_service(sim: SimulatorServer, adapter: HetznerAdapter) -> None:
    target = _ready(sim, adapter, 32)
    _machine(sim, adapter).systemd.systemctl(["stop", vps.SERVICE_UNIT])
    found = vps_ops.probe(target, timeout=10)
    assert found.reachable
    assert found.service is not None and not found.service.running
    assert found.service.active == "inactive"


def test_an_unreachable_vps_is_a_finding_not_an_error() -> None:
    pair = generate_ssh_keypair()
    target = Target("127.0.0.1", _closed_port(), pair.public_openssh, pair.private_openssh)
    found = vps_ops.probe(target, timeout=3)
    assert not found.reachable
    assert found.service is None
    assert found.error is not None and found.error.startswith("ssh_unreachable")
    assert "unreachable over SSH" in found.describe()


def test_a_changed_host_key_makes_the_vps_unreachable_to_the_probe(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    target = _ready(sim, adapter, 33)
    stranger = generate_ssh_keypair().public_openssh
    found = vps_ops.probe(Target(target.host, target.port, stranger, target.private_key), 10)
    assert not found.reachable
    assert found.error is not None and found.error.startswith("host_key_mismatch")


def test_restart_brings_a_stopped_service_back(
    sim: SimulatorServer, adapter: HetznerAdapter
) -> None:
    target = _ready(sim, adapter, 34)
    machine = _machine(sim, adapter)
    machine.systemd.systemctl(["stop", vps.SERVICE_UNIT])
    assert rachel8_vps.service(machine)["ActiveState"] == "inactive"
    state = vps_ops.restart_service(target, timeout=10)
    assert state.running
    assert rachel8_vps.service(machine)["ActiveState"] == "active"


def test_a_heartbeat_is_asked_for_at_once(sim: SimulatorServer, adapter: HetznerAdapter) -> None:
    target = _ready(sim, adapter, 36)
    machine = _machine(sim, adapter)
    with machine.systemd.lock:
        asked = machine.systemd.clock.now()
    vps_ops.ask_heartbeat(target, timeout=10)
    with machine.systemd.lock:
        agent = list(machine.systemd.services[vps.AGENT_SERVICE_UNIT].journal)
    # Its run began then, not at the timer's tick (30 simulated seconds apart).
    assert any(e.message.startswith("Starting") and 0 <= e.at - asked < 1.0 for e in agent), agent[
        -5:
    ]


def test_restart_of_an_unreachable_vps_is_transient() -> None:
    pair = generate_ssh_keypair()
    target = Target("127.0.0.1", _closed_port(), pair.public_openssh, pair.private_openssh)
    with pytest.raises(SSHError) as info:
        vps_ops.restart_service(target, timeout=3)
    assert info.value.code == "ssh_unreachable" and info.value.transient


def test_the_journal_tail_is_bounded(sim: SimulatorServer, adapter: HetznerAdapter) -> None:
    target = _ready(sim, adapter, 35)
    every = vps_ops.journal_tail(target, vps_ops.MAX_LOG_LINES, timeout=10)
    assert len(every) >= 2
    assert vps_ops.journal_tail(target, 1, timeout=10) == every[-1:]
    for wrong in (0, vps_ops.MAX_LOG_LINES + 1):
        with pytest.raises(ValueError, match="lines must be between"):
            vps_ops.journal_tail(target, wrong, timeout=10)
