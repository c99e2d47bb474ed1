"""Faults of running VPSs through the admin API: each one's effect, as the control plane sees it."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator

import httpx
import pytest

from core.cloud import vps_contract as contract
from sim.faults import pick_share
from sim.server import SimulatorServer
from sim.vps import Vps
from tests.sim.agent_data import boot, heartbeats_from, inject, show, wait_heartbeats
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
    return make_sim(time_scale=0.01)


@pytest.fixture
def admin(fast: SimulatorServer) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {fast.token}"}
    with httpx.Client(base_url=f"{fast.url}/_sim", headers=headers, timeout=10) as client:
        yield client


def ready(sim: SimulatorServer, receiver: CallbackReceiver, name: str) -> Vps:
    """A VPS whose Rachel8 runs and whose agent has sent a heartbeat."""
    vps = boot(sim, name)
    inject(vps, receiver.url(f"/heartbeats/{name}"), f"{sim.url}/telegram")
    wait_heartbeats(receiver, vps.ip, 0)
    return vps


def banner(vps: Vps, port: int, timeout: float = 0.5) -> bytes:
    """The first bytes the VPS's SSH port sends (raises TimeoutError when it hangs)."""
    with socket.create_connection((vps.ip, port), 2) as sock:
        sock.settimeout(timeout)
        return sock.recv(64)


def silent_while_others_beat(
    receiver: CallbackReceiver, silent: Vps, other: Vps, beats: int = 3
) -> None:
    """`other` sends `beats` more heartbeats; `silent` sends none meanwhile."""
    before = len(heartbeats_from(receiver, silent.ip))
    wait_heartbeats(receiver, other.ip, len(heartbeats_from(receiver, other.ip)) + beats - 1)
    assert len(heartbeats_from(receiver, silent.ip)) == before


def post(admin: httpx.Client, fault: str, **target: object) -> list[str]:
    answer = admin.post("/vps/faults", json={"fault": fault, **target})
    assert answer.status_code == 200, answer.text
    applied: list[str] = answer.json()["applied"]
    return applied


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        ("POST", {"fault": "meltdown", "servers": ["rc-1"]}, "unknown fault 'meltdown'"),
        ("POST", {"servers": ["rc-1"]}, "unknown fault None"),
        ("POST", {"fault": "freeze"}, 'either "servers"'),
        ("POST", {"fault": "freeze", "servers": ["rc-1"], "share": 0.5}, 'either "servers"'),
        ("POST", {"fault": "freeze", "share": 1.5}, "between 0 and 1"),
        ("POST", {"fault": "freeze", "share": 0.5, "seed": "x"}, "seed must be an integer"),
        ("POST", {"fault": "freeze", "servers": "rc-1"}, "list of server names"),
        ("POST", {"fault": "freeze", "servers": ["rc-9"]}, "no running server named 'rc-9'"),
        ("POST", {"fault": "freeze", "servers": ["rc-1"], "when": 1}, "unknown field 'when'"),
        ("DELETE", {"fault": "meltdown"}, "unknown fault 'meltdown'"),
        ("DELETE", {"servers": ["rc-9"]}, "no simulated server named 'rc-9'"),
        ("DELETE", {"fault": None, "share": 1}, "unknown field 'share'"),
    ],
)
def test_bad_requests_answer_400_and_change_nothing(
    fast: SimulatorServer,
    admin: httpx.Client,
    method: str,
    body: dict[str, object],
    message: str,
) -> None:
    boot(fast, "rc-1")
    answer = admin.request(method, "/vps/faults", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_input" and message in error["message"]
    assert admin.get("/vps/faults").json() == {"faults": {}}


def test_bodies_that_are_not_objects_and_strangers_are_refused(
    fast: SimulatorServer, admin: httpx.Client
) -> None:
    for content in (b"{not json", b"[1]", b""):
        answer = admin.post("/vps/faults", content=content)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_input"
    stranger = httpx.post(f"{fast.url}/_sim/vps/faults", json={"fault": "freeze", "share": 1})
    assert stranger.status_code == 401


def test_crash_once_restarts_rachel8_once(
    fast: SimulatorServer, receiver: CallbackReceiver, admin: httpx.Client
) -> None:
    vps = ready(fast, receiver, "rc-1")
    assert post(admin, "crash_once", servers=["rc-1"]) == ["rc-1"]
    assert any(line.startswith("TypeError: ") for line in vps.systemd.journal(RACHEL8))
    wait_for(lambda: show(vps, RACHEL8, *STATE)["SubState"] == "running", what="the restart")
    assert show(vps, RACHEL8, *STATE) == {
        "ActiveState": "active", "SubState": "running", "Result": "success", "NRestarts": "1",
    }  # fmt: skip
    assert admin.get("/vps/faults").json() == {"faults": {}}  # spent
    sent = wait_for(
        lambda: [b for b in heartbeats_from(receiver, vps.ip) if b["service"]["restarts"] == 1],
        what="a heartbeat counting the restart",
    )
    assert sent[-1]["service"]["sub"] == "running"


def test_crash_loop_fails_the_unit_until_cleared_and_restarted(
    fast: SimulatorServer, receiver: CallbackReceiver, admin: httpx.Client
) -> None:
    vps = ready(fast, receiver, "rc-1")
    post(admin, "crash_loop", servers=["rc-1"])
    wait_for(lambda: show(vps, RACHEL8, "Result")["Result"] == "start-limit-hit", what="limit")
    assert show(vps, RACHEL8, "ActiveState")["ActiveState"] == "failed"
    wait_for(
        lambda: heartbeats_from(receiver, vps.ip)[-1]["service"]["result"] == "start-limit-hit",
        what="a heartbeat of the failed unit",
    )
    restart = vps.systemd.systemctl(["restart", RACHEL8])
    assert restart.exit_status == 1 and "attempted too often" in restart.stderr
    assert admin.request("DELETE", "/vps/faults", json={"fault": "crash_loop"}).json() == {
        "cleared": ["rc-1"]
    }
    vps.systemd.systemctl(["reset-failed", RACHEL8])
    assert vps.systemd.systemctl(["restart", RACHEL8]).exit_status == 0
    wait_for(lambda: show(vps, RACHEL8, "SubState")["SubState"] == "running", what="running")


def test_freeze_hangs_ssh_and_stops_heartbeats_until_cleared(
    fast: SimulatorServer, receiver: CallbackReceiver, admin: httpx.Client
) -> None:
    frozen, other = ready(fast, receiver, "rc-1"), ready(fast, receiver, "rc-2")
    port = fast.config.ssh_port
    assert banner(frozen, port).startswith(b"SSH-2.0-")
    post(admin, "freeze", servers=["rc-1"])
    with pytest.raises(TimeoutError):
        banner(frozen, port)
    silent_while_others_beat(receiver, frozen, other)
    assert banner(other, port).startswith(b"SSH-2.0-")
    assert admin.get("/vps/faults").json() == {"faults": {"rc-1": ["freeze"]}}
    assert admin.request("DELETE", "/vps/faults", content=b"").json() == {"cleared": ["rc-1"]}
    assert banner(frozen, port).startswith(b"SSH-2.0-")
    wait_heartbeats(receiver, frozen.ip, len(heartbeats_from(receiver, frozen.ip)))


def test_partition_hangs_ssh_and_the_agent_reaches_nothing(
    fast: SimulatorServer, receiver: CallbackReceiver, admin: httpx.Client
) -> None:
    cut, other = ready(fast, receiver, "rc-1"), ready(fast, receiver, "rc-2")
    post(admin, "partition", servers=["rc-1"])
    with pytest.raises(TimeoutError):
        banner(cut, fast.config.ssh_port)
    silent_while_others_beat(receiver, cut, other)
    assert "timed out" in (cut.agent_record.last_error or "")
    assert show(cut, contract.AGENT_SERVICE_UNIT, "Result")["Result"] == "exit-code"
    assert show(cut, RACHEL8, "SubState")["SubState"] == "running"  # grammY retries quietly


def test_heartbeat_loss_loses_only_the_posts(
    fast: SimulatorServer, receiver: CallbackReceiver, admin: httpx.Client
) -> None:
    lossy, other = ready(fast, receiver, "rc-1"), ready(fast, receiver, "rc-2")
    post(admin, "heartbeat_loss", servers=["rc-1"])
    silent_while_others_beat(receiver, lossy, other)
    assert banner(lossy, fast.config.ssh_port).startswith(b"SSH-2.0-")
    assert show(lossy, RACHEL8, "SubState")["SubState"] == "running"
    admin.request("DELETE", "/vps/faults", json={"fault": "heartbeat_loss", "servers": ["rc-1"]})
    wait_heartbeats(receiver, lossy.ip, len(heartbeats_from(receiver, lossy.ip)))


def test_conflict_puts_409_lines_in_the_journal_and_the_heartbeat(
    fast: SimulatorServer, receiver: CallbackReceiver, admin: httpx.Client
) -> None:
    vps = ready(fast, receiver, "rc-1")
    post(admin, "conflict", servers=["rc-1"])
    conflict = (
        "GrammyError: Call to 'getUpdates' failed! (409: Conflict: terminated by other "
        "getUpdates request; make sure that only one bot instance is running)"
    )
    wait_for(lambda: show(vps, RACHEL8, "Result")["Result"] == "start-limit-hit", what="limit")
    assert vps.systemd.journal(RACHEL8).count(conflict) >= 2  # at once, then at every start
    sent = wait_for(
        lambda: [b for b in heartbeats_from(receiver, vps.ip) if b["telegram"]["conflicts"]],
        what="a heartbeat counting the conflicts",
    )
    assert sent[0]["telegram"]["conflicts"] >= 1


def test_a_share_of_the_running_fleet_is_picked_by_the_seed(
    fast: SimulatorServer, receiver: CallbackReceiver, admin: httpx.Client
) -> None:
    for name in ("rc-1", "rc-2", "rc-3"):
        boot(fast, name)
    applied = post(admin, "heartbeat_loss", share=0.67, seed=11)
    assert applied == pick_share(["rc-1", "rc-2", "rc-3"], 0.67, random.Random(11))
    assert len(applied) == 2
    assert post(admin, "heartbeat_loss", share=0.0) == []
    cleared = admin.request("DELETE", "/vps/faults", json={"fault": None, "servers": None})
    assert cleared.json() == {"cleared": applied}
