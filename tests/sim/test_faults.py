"""Fault injection: every fault is observable through the SDK."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import hcloud
import httpx
import pytest
from hcloud.actions import ActionFailedException
from hcloud.images import Image
from hcloud.server_types import ServerType

from sim.server import SimulatorServer
from tests.sim.conftest import OpenApi, fast_client
from tests.sim.helpers import CallbackReceiver, user_data, wait_for

CX23, DEBIAN = ServerType(name="cx23"), Image(name="debian-12")


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    server = CallbackReceiver()
    yield server
    server.close()


def create(
    client: hcloud.Client, name: str, **kwargs: object
) -> hcloud.servers.CreateServerResponse:
    return client.servers.create(name, server_type=CX23, image=DEBIAN, **kwargs)  # type: ignore[arg-type]


def test_error_rate_and_code_per_operation(sim: SimulatorServer, openapi: OpenApi) -> None:
    client = fast_client(sim, openapi)
    sim.set_faults({"errors": {"create_server": {"code": "unavailable", "count": 1}}})
    with pytest.raises(hcloud.APIException) as caught:
        create(client, "a")
    assert caught.value.code == "unavailable"  # 503: the SDK does not retry it
    assert create(client, "a").server.name == "a"  # the rule is spent
    # A retryable code is retried by the SDK and then succeeds.
    sim.set_faults({"errors": {"list_servers": {"code": "conflict", "count": 2}}})
    assert [s.name for s in client.servers.get_all()] == ["a"]
    assert sim.stats()["errors"]["list_servers:conflict"] == 2
    # `*` hits every operation.
    sim.set_faults({"errors": {"*": {"code": "maintenance"}}})
    with pytest.raises(hcloud.APIException) as caught:
        client.locations.get_all()
    assert caught.value.code == "maintenance"


def test_rate_limit_bucket_and_429_bursts(
    make_sim: Callable[..., SimulatorServer], openapi: OpenApi
) -> None:
    sim = make_sim(rate_limit=3, rate_refill=0.0)
    client = fast_client(sim, openapi)
    client._client._retry_max_retries = 0
    for _ in range(3):
        client.locations.get_all()
    with pytest.raises(hcloud.APIException) as caught:
        client.locations.get_all()
    assert caught.value.code == "rate_limit_exceeded"
    headers = httpx.get(
        f"{sim.endpoint}/locations", headers={"Authorization": f"Bearer {sim.token}"}
    ).headers
    assert headers["RateLimit-Limit"] == "3" and headers["RateLimit-Remaining"] == "0"

    burst_sim = make_sim()
    retrying = fast_client(burst_sim, openapi)
    burst_sim.set_faults({"rate_limit_burst": 2})
    assert retrying.locations.get_all()  # the SDK retried through the burst
    assert burst_sim.stats()["rate_limited"] == 2
    burst_sim.set_faults({"rate_limit_burst": 10})
    with pytest.raises(hcloud.APIException) as caught:
        retrying.locations.get_all()  # 1 try + 5 retries all meet the burst
    assert caught.value.code == "rate_limit_exceeded"


def test_slow_and_failing_actions(make_sim: Callable[..., SimulatorServer]) -> None:
    sim = make_sim(boot_seconds=0.0)
    client = fast_client(sim)
    sim.set_faults({"action_delay": 0.5})
    created = create(client, "slow")
    assert client.actions.get_by_id(created.action.id).status == "running"
    created.action.wait_until_finished()
    assert client.servers.get_by_id(created.server.id).status == "running"

    sim.set_faults({"action_errors": {"create_server": 1.0, "stop_server": 1.0}})
    failed = create(client, "broken")
    with pytest.raises(ActionFailedException) as caught:
        failed.action.wait_until_finished()
    assert caught.value.action.error["code"] == "action_failed"
    assert client.servers.get_by_id(failed.server.id).status == "off"
    with pytest.raises(ActionFailedException):
        client.servers.power_off(created.server).wait_until_finished()


def test_server_that_never_reaches_running(sim: SimulatorServer) -> None:
    client = fast_client(sim)
    sim.set_faults({"never_running": {"names": ["stuck-*"]}})
    stuck, fine = create(client, "stuck-1"), create(client, "fine-1")
    fine.action.wait_until_finished()
    with pytest.raises(hcloud.actions.ActionTimeoutException):
        stuck.action.wait_until_finished(max_retries=10)
    assert client.servers.get_by_id(stuck.server.id).status == "initializing"
    with pytest.raises(hcloud.APIException) as caught:
        client.servers.power_on(stuck.server)
    assert caught.value.code == "locked"
    client.servers.delete(stuck.server).wait_until_finished()  # still deletable


def test_cloud_init_that_never_calls_back(sim: SimulatorServer, receiver: CallbackReceiver) -> None:
    client = fast_client(sim)
    sim.set_faults({"no_callback": 1.0})
    created = create(client, "mute", user_data=user_data(callback_url=receiver.url("/cb")))
    created.action.wait_until_finished()
    vps = wait_for(lambda: sim.vps(created.server.id), what="the VPS")
    wait_for(lambda: vps.cloud_init_done, what="cloud-init")
    assert receiver.calls == [] and vps.callback.attempts == 0
    assert client.servers.get_by_id(created.server.id).status == "running"
    sim.clear_faults()
    talkative = create(client, "talkative", user_data=user_data(callback_url=receiver.url("/cb")))
    wait_for(lambda: receiver.calls, what="the control callback")
    assert receiver.calls[0].client_ip == talkative.server.public_net.ipv4.ip


def test_vps_whose_ssh_refuses(sim: SimulatorServer) -> None:
    client = fast_client(sim)
    sim.set_faults({"ssh_refuse": 1.0})
    refused = create(client, "refuser")
    refused.action.wait_until_finished()
    wait_for(lambda: sim.stats()["servers"][str(refused.server.id)]["boot"] is not None)
    assert client.servers.get_by_id(refused.server.id).status == "running"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((refused.server.public_net.ipv4.ip, sim.config.ssh_port), 2)
    sim.clear_faults()
    fine = create(client, "answerer")
    vps = wait_for(lambda: sim.vps(fine.server.id), what="the VPS")
    wait_for(lambda: vps.ssh_listening, what="SSH")
    socket.create_connection((fine.server.public_net.ipv4.ip, sim.config.ssh_port), 2).close()


def test_faults_through_the_admin_endpoint(sim: SimulatorServer) -> None:
    auth = {"Authorization": f"Bearer {sim.token}"}
    admin = httpx.Client(base_url=f"{sim.url}/_sim", headers=auth)
    assert admin.get("/faults", headers={"Authorization": "Bearer nope"}).status_code == 401
    answer = admin.put("/faults", json={"errors": {"get_server": {"code": "timeout", "count": 6}}})
    assert answer.status_code == 200
    assert admin.get("/faults").json()["faults"]["errors"]["get_server"]["code"] == "timeout"
    bad = admin.put("/faults", json={"errors": {"x": {"code": "nonsense"}}})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
    client = fast_client(sim)
    created = create(client, "admin-target")
    with pytest.raises(hcloud.APIException) as caught:
        client.servers.get_by_id(created.server.id)  # 1 try + 5 SDK retries on timeout
    assert caught.value.code == "timeout"
    assert admin.delete("/faults").json()["faults"]["errors"] == {}
    assert client.servers.get_by_id(created.server.id).name == "admin-target"

    stats = admin.get("/stats").json()
    assert stats["requests"]["get_server"] == 7 and stats["requests"]["create_server"] == 1
    assert str(created.server.id) in stats["servers"]
    vps = wait_for(lambda: admin.get("/vps").json()["vps"], what="the VPS listing")
    assert vps[0]["server_id"] == created.server.id and vps[0]["root_dir"]
    server_faults = admin.put(f"/servers/{created.server.id}/faults", json={"ssh_refuse": True})
    assert server_faults.json()["faults"]["ssh_refuse"] is True
    assert admin.post("/reset").json() == {"reset": True}
    assert client.servers.get_all() == [] and admin.get("/vps").json()["vps"] == []
