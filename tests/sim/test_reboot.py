"""Hetzner reboot and reset of a simulated server: the box restarts, some faults survive it."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import hcloud
import httpx
import pytest

from core.cloud import vps_contract as contract
from sim.server import SimulatorServer
from sim.vps import Vps
from tests.sim.agent_data import boot, heartbeats_from, inject, show, wait_heartbeats
from tests.sim.conftest import fast_client
from tests.sim.helpers import CallbackReceiver, wait_for

RACHEL8 = contract.SERVICE_UNIT
STATE = ("ActiveState", "SubState", "Result", "NRestarts")


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver(status=202)
    yield server
    server.close()


@pytest.fixture
def fast(make_sim: Callable[..., SimulatorServer]) -> SimulatorServer:
    return make_sim(time_scale=0.01, boot_seconds=0.05)


def ready(sim: SimulatorServer, receiver: CallbackReceiver, name: str) -> Vps:
    vps = boot(sim, name)
    inject(vps, receiver.url(f"/heartbeats/{name}"), f"{sim.url}/telegram")
    wait_heartbeats(receiver, vps.ip, 0)
    return vps


def fault(sim: SimulatorServer, name: str, server: str) -> None:
    answer = httpx.post(
        f"{sim.url}/_sim/vps/faults",
        json={"fault": name, "servers": [server]},
        headers={"Authorization": f"Bearer {sim.token}"},
    )
    assert answer.status_code == 200, answer.text


def power(sim: SimulatorServer, name: str, command: str) -> None:
    client = fast_client(sim)
    server = client.servers.get_by_name(name)
    assert server is not None
    action: hcloud.actions.BoundAction = getattr(client.servers, command)(server)
    action.wait_until_finished()


def answers_ssh(vps: Vps, port: int) -> bool:
    try:
        with socket.create_connection((vps.ip, port), 1) as sock:
            sock.settimeout(0.5)
            return sock.recv(8).startswith(b"SSH-2.0")
    except OSError:
        return False


def test_a_reboot_restarts_the_box_and_clears_a_freeze(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    vps = ready(fast, receiver, "rc-1")
    fault(fast, "crash_once", "rc-1")
    wait_for(lambda: show(vps, RACHEL8, "NRestarts")["NRestarts"] == "1", what="a restart")
    fault(fast, "freeze", "rc-1")
    assert not answers_ssh(vps, fast.config.ssh_port)
    before = heartbeats_from(receiver, vps.ip)[-1]["uptime_seconds"]
    count = len(heartbeats_from(receiver, vps.ip))
    power(fast, "rc-1", "reboot")  # the action ends; the box then boots
    wait_for(lambda: vps.faults.active() == [], what="the freeze to go with the boot")
    wait_for(lambda: answers_ssh(vps, fast.config.ssh_port), what="SSH after the reboot")
    after = wait_heartbeats(receiver, vps.ip, count)[count]
    assert after["uptime_seconds"] < before
    assert after["service"] == {
        "active": "active", "sub": "running", "restarts": 0, "result": "success",
        "exit_status": 0,
    }  # fmt: skip
    assert show(vps, contract.AGENT_TIMER_UNIT, "ActiveState")["ActiveState"] == "active"


def test_a_reset_keeps_a_partition_and_a_crash_loop(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    vps = ready(fast, receiver, "rc-1")
    fault(fast, "crash_loop", "rc-1")
    fault(fast, "partition", "rc-1")
    power(fast, "rc-1", "reset")
    wait_for(lambda: vps.systemd.powered and vps.systemd.boots == 2, what="the boot")
    assert vps.faults.active() == ["crash_loop", "partition"]
    wait_for(lambda: show(vps, RACHEL8, "Result")["Result"] == "start-limit-hit", what="limit")
    assert not answers_ssh(vps, fast.config.ssh_port)
    assert any(line.startswith("TypeError: ") for line in vps.systemd.journal(RACHEL8))


def test_a_pending_crash_once_is_gone_after_a_reboot(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    vps = ready(fast, receiver, "rc-1")
    assert vps.systemd.systemctl(["stop", RACHEL8]).exit_status == 0
    fault(fast, "crash_once", "rc-1")  # nothing runs: it waits for the next start
    assert vps.faults.active() == ["crash_once"]
    power(fast, "rc-1", "reboot")
    wait_for(lambda: vps.systemd.boots == 2, what="the boot")
    wait_for(lambda: show(vps, RACHEL8, "SubState")["SubState"] == "running", what="running")
    assert vps.faults.active() == []
    assert show(vps, RACHEL8, *STATE) == {
        "ActiveState": "active", "SubState": "running", "Result": "success", "NRestarts": "0",
    }  # fmt: skip
    assert not any(line.startswith("TypeError: ") for line in vps.systemd.journal(RACHEL8))


def test_power_off_stops_everything_until_power_on(
    fast: SimulatorServer, receiver: CallbackReceiver
) -> None:
    vps = ready(fast, receiver, "rc-1")
    power(fast, "rc-1", "power_off")
    assert not vps.systemd.powered and not answers_ssh(vps, fast.config.ssh_port)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((vps.ip, fast.config.ssh_port), 1)
    assert show(vps, RACHEL8, "ActiveState")["ActiveState"] == "inactive"
    count = len(heartbeats_from(receiver, vps.ip))
    power(fast, "rc-1", "power_on")
    wait_for(lambda: vps.systemd.boots == 2, what="the boot")
    wait_heartbeats(receiver, vps.ip, count)
    assert answers_ssh(vps, fast.config.ssh_port)
