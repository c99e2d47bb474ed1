"""The customer's restart and logs through the served API, on a ready simulated VPS (real SSH).

A deploy goes to ready through the real pipeline; then the API (X-API-Key)
restarts Rachel8, reads its journal (no planted secret in it), and answers
502 `vps_unreachable` when the VPS cannot be reached safely.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from core.cloud import vps_contract as vps
from core.domain.lifecycle import Status
from core.platform.dev_secrets import api_keys
from core.security.crypto import generate_ssh_keypair
from core.store.models import Event, Server
from jobs import operator
from tests import factories
from tests.pipeline import rachel8_vps
from tests.pipeline.harness import Stack, WebServer


@pytest.fixture
def api(served: Stack, web: WebServer) -> Iterator[httpx.Client]:
    headers = {"X-API-Key": api_keys(served.settings)[0]}
    with httpx.Client(base_url=web.url, headers=headers, timeout=60) as client:
        yield client


def _ready(stack: Stack) -> tuple[Server, list[str]]:
    owner = factories.paying_customer(stack.ring)
    outcome = operator.deploy(stack.redis, stack.settings, owner.external_id, "operator:test")
    server = stack.wait_status(outcome.server_id, Status.READY)
    return server, factories.planted_secrets(owner, stack.ring)


def test_restart_and_logs_of_a_ready_server(served: Stack, api: httpx.Client) -> None:
    server, planted = _ready(served)
    machine = served.sim.vps(server.provider_id or 0)
    assert machine is not None
    machine.systemd.systemctl(["stop", vps.SERVICE_UNIT])
    assert rachel8_vps.service(machine)["ActiveState"] == "inactive"

    response = api.post(f"/api/servers/{server.id}/restart")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["server_id"] == server.id
    assert body["service"]["active"] == "active" and body["service"]["running"] is True
    assert rachel8_vps.service(machine)["ActiveState"] == "active"
    repair = Event.select().where((Event.server == server.id) & (Event.kind == "repair")).get()
    assert repair.actor == "customer"
    assert repair.message.startswith("restart requested: Rachel8 active/running")

    logs = api.get(f"/api/servers/{server.id}/logs", params={"lines": 3})
    assert logs.status_code == 200, logs.text
    lines = logs.json()["lines"]
    assert 1 <= len(lines) <= 3
    every = api.get(f"/api/servers/{server.id}/logs", params={"lines": 500}).json()["lines"]
    assert every[-len(lines) :] == lines
    assert any("Stopped" in line or "Started" in line for line in every), every
    for secret in planted:
        assert all(secret not in line for line in every)


def test_a_vps_that_cannot_be_reached_safely_is_a_bad_gateway(
    served: Stack, api: httpx.Client
) -> None:
    server, _ = _ready(served)
    # Another host key than the one pinned: never connect (a man in the middle, a new box).
    Server.update(host_key=generate_ssh_keypair().public_openssh).where(
        Server.id == server.id
    ).execute()
    for response in (
        api.post(f"/api/servers/{server.id}/restart"),
        api.get(f"/api/servers/{server.id}/logs"),
    ):
        assert response.status_code == 502, response.text
        assert response.json()["error"]["code"] == "vps_unreachable"
    # Nothing answers at this address at all.
    Server.update(ipv4="127.9.9.9").where(Server.id == server.id).execute()
    response = api.post(f"/api/servers/{server.id}/restart")
    assert (response.status_code, response.json()["error"]["code"]) == (502, "vps_unreachable")
    repairs = Event.select().where((Event.server == server.id) & (Event.kind == "repair"))
    assert [e.message.split(":")[0:2] for e in repairs] == [["restart requested", " failed"]] * 2
    assert all(e.actor == "customer" for e in repairs)
