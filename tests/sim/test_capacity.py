"""Capacity faults: a location out of room for a server type, on create and in the catalogue,
and the simulated timings of each path."""

from __future__ import annotations

import time
from collections.abc import Callable

import hcloud
import httpx
import pytest
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType

from sim.capacity import CapacityFault, availability, refusal
from sim.server import SimulatorServer
from tests.sim.conftest import OpenApi, fast_client
from tests.sim.helpers import CallbackReceiver, wait_for
from tests.sim.rachel8_data import user_data
from tests.sim.test_sdk_roundtrip import api_error

DEBIAN = Image(name="debian-12")


def _create(client: hcloud.Client, name: str, server_type: str, location: str | None) -> object:
    return lambda: client.servers.create(
        name,
        server_type=ServerType(name=server_type),
        image=DEBIAN,
        location=Location(name=location) if location else None,
    )


def _available(client: hcloud.Client, server_type: str) -> dict[str, bool]:
    found = client.server_types.get_by_name(server_type)
    assert found is not None and found.locations is not None
    return {entry.location.name: bool(entry.available) for entry in found.locations}


def test_rules_match_their_location_and_type_until_spent() -> None:
    rules = [
        CapacityFault(location="fsn1", server_type="cx23"),
        CapacityFault(location="nbg1", code="placement_error", advertised=False, count=0),
        CapacityFault(server_type="cax11", advertised=False),
    ]
    assert refusal(rules, "fsn1", "cx23") is rules[0]
    assert refusal(rules, "fsn1", "cx33") is None
    assert refusal(rules, "nbg1", "cx23") is None  # spent
    assert refusal(rules, "hel1", "cax11") is rules[2]
    shown = availability(rules)
    assert not shown("fsn1", "cx23") and shown("hel1", "cax11") and shown("nbg1", "cx23")


def test_a_location_out_of_a_type_refuses_it_and_says_so(
    sim: SimulatorServer, client: hcloud.Client
) -> None:
    admin = httpx.Client(
        base_url=f"{sim.url}/_sim", headers={"Authorization": f"Bearer {sim.token}"}
    )
    answer = admin.put(
        "/faults",
        json={
            "capacity": [
                {"location": "fsn1", "server_type": "cx23"},
                {"location": "nbg1", "server_type": "cx23", "code": "placement_error",
                 "advertised": False, "count": 1},
            ]
        },
    )  # fmt: skip
    assert answer.status_code == 200
    assert _available(client, "cx23") == {"fsn1": False, "nbg1": True, "hel1": True}
    assert all(_available(client, "cx33").values())  # another type has room there
    cx23 = client.server_types.get_by_name("cx23")
    assert cx23 is not None and cx23.locations is not None
    assert [e.recommended for e in cx23.locations] == [False, True, True]

    refused = api_error(_create(client, "a", "cx23", "fsn1"))
    assert refused.code == "resource_unavailable" and "fsn1" in refused.message
    placement = api_error(_create(client, "b", "cx23", "nbg1"))
    assert placement.code == "placement_error"  # 422, not shown in the catalogue
    # That rule is spent: nbg1 has room again; fsn1 still has none.
    assert _create(client, "b", "cx23", "nbg1")().server.location.name == "nbg1"  # type: ignore[attr-defined]
    assert api_error(_create(client, "c", "cx23", "fsn1")).code == "resource_unavailable"
    # Without a location, Hetzner places it where there is room.
    placed = _create(client, "d", "cx23", None)()
    assert placed.server.location.name == "nbg1"  # type: ignore[attr-defined]
    assert _create(client, "e", "cx33", "fsn1")().server.location.name == "fsn1"  # type: ignore[attr-defined]
    stats = admin.get("/stats").json()
    assert stats["errors"]["create_server:resource_unavailable"] == 2
    assert stats["errors"]["create_server:placement_error"] == 1


def test_every_location_refusing_leaves_no_server(
    sim: SimulatorServer, client: hcloud.Client
) -> None:
    sim.set_faults({"capacity": [{"server_type": "cx23"}]})
    assert not any(_available(client, "cx23").values())
    assert api_error(_create(client, "a", "cx23", None)).code == "resource_unavailable"
    assert client.servers.get_all() == []


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"location": "mars1"}, "unknown location"),
        ({"server_type": "cx999"}, "unknown server type"),
        ({"code": "server_error"}, "must be one of"),
        ({"count": -1}, "must not be negative"),
        ({"where": "fsn1"}, "unknown field"),
    ],
)
def test_bad_capacity_rules_are_refused(sim: SimulatorServer, rule: dict, fragment: str) -> None:
    admin = httpx.Client(
        base_url=f"{sim.url}/_sim", headers={"Authorization": f"Bearer {sim.token}"}
    )
    answer = admin.put("/faults", json={"capacity": [rule]})
    assert answer.status_code == 422 and fragment in answer.json()["error"]["message"]


def test_each_path_takes_its_simulated_time(
    make_sim: Callable[..., SimulatorServer], openapi: OpenApi
) -> None:
    """Create 10 s, boot 20 s, cloud-init 10 s and the stock install 180 s, at 1 ms each:
    the stock server's callback comes no sooner than 220 simulated seconds."""
    sim = make_sim(
        time_scale=0.001, create_seconds=10, boot_seconds=20, cloud_init_seconds=10,
        install_seconds=180,
    )  # fmt: skip
    client = fast_client(sim, openapi)
    receiver = CallbackReceiver()
    try:
        started = time.monotonic()
        created = client.servers.create(
            "timed", server_type=ServerType(name="cx23"), image=Image(name="ubuntu-24.04"),
            user_data=user_data(callback_url=receiver.url("/cb")),
        )  # fmt: skip
        wait_for(lambda: receiver.calls, what="the callback")
        elapsed = time.monotonic() - started
        timings = sim.stats()["servers"][str(created.server.id)]
        assert timings["install"] == 180 and elapsed >= (10 + 20 + 10 + 180) * 0.001
        assert timings["create"] >= 0.01 and timings["boot"] >= 0.02
        assert timings["cloud_init"] >= 0.19
    finally:
        receiver.close()
