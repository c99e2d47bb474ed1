"""The adapter's snapshots, power and capacity against the simulator, through the SDK."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis

from core.cloud.hetzner import HetznerAdapter
from core.cloud.provider import CapacityError, HetznerError
from sim.config import SimConfig
from sim.server import SimulatorServer
from tests.pipeline.test_hetzner_adapter import prepared, spec

LABELS = {"rachel-cloud/image": "true", "rachel-cloud/env": "test"}


def _running(adapter: HetznerAdapter, sim: SimulatorServer, server_id: int = 1) -> int:
    fw, key = prepared(adapter)
    server, _ = adapter.create_server(spec(server_id), fw, key)
    sim.wait_until(lambda: adapter.client.servers.get_by_id(server.id).status == "running")
    return server.id


def test_a_snapshot_is_made_listed_used_and_deleted(
    adapter: HetznerAdapter, sim: SimulatorServer
) -> None:
    adapter.action_poll = 0.02
    provider_id = _running(adapter, sim)
    adapter.wait_for_action(
        adapter.shutdown_server(provider_id), timeout=10, operation="shutdown server"
    )
    assert adapter.client.servers.get_by_id(provider_id).status == "off"
    first = adapter.create_snapshot(
        provider_id, description="rachel8 a", labels=LABELS | {"commit": "a"}, timeout=10
    )
    assert (first.type, first.status, first.created_from) == ("snapshot", "available", provider_id)
    assert first.image_size and first.disk_size == 40 and first.labels["commit"] == "a"
    second = adapter.create_snapshot(
        provider_id, description="rachel8 b", labels=LABELS | {"commit": "b"}, timeout=10
    )
    listed = adapter.list_snapshots("rachel-cloud/image=true,rachel-cloud/env=test")
    assert [i.id for i in listed] == [second.id, first.id]  # newest first
    assert adapter.list_snapshots("commit=b") == [second]

    fw, key = prepared(adapter)
    copy, adopted = adapter.create_server(
        replace(spec(2), image=str(second.id), server_type="cx33"), fw, key
    )
    assert not adopted
    assert adapter.client.servers.get_by_id(copy.id).image.id == second.id

    assert adapter.delete_image(first.id) is True
    assert adapter.delete_image(first.id) is False  # gone already: a success too
    assert adapter.get_image(first.id) is None
    assert adapter.calls["POST /v1/servers/{id}/actions/create_image"] == 2


def test_capacity_errors_are_their_own_class(adapter: HetznerAdapter, sim: SimulatorServer) -> None:
    sim.set_faults(
        {
            "capacity": [
                {"location": "fsn1", "server_type": "cx23"},
                {"location": "nbg1", "code": "placement_error", "advertised": False},
            ]
        }
    )
    assert adapter.server_type_availability("cx23") == {"fsn1": False, "nbg1": True, "hel1": True}
    fw, key = prepared(adapter)
    with pytest.raises(CapacityError) as refused:
        adapter.create_server(spec(1), fw, key)
    error = refused.value
    assert (error.code, error.transient) == ("resource_unavailable", False)
    assert error.correlation_id and error.correlation_id in error.message
    with pytest.raises(CapacityError) as placement:
        adapter.create_server(replace(spec(2), location="nbg1"), fw, key)
    assert placement.value.code == "placement_error"
    created, _ = adapter.create_server(replace(spec(3), location="hel1"), fw, key)
    assert created.id
    with pytest.raises(HetznerError) as unknown:
        adapter.server_type_availability("cx999")
    assert unknown.value.code == "not_found" and not isinstance(unknown.value, CapacityError)


@pytest.fixture
def slow_images() -> Iterator[SimulatorServer]:
    """Snapshots take 100 simulated seconds (1 s real)."""
    with SimulatorServer(SimConfig(seed=7, time_scale=0.01, image_seconds=100)) as server:
        yield server


def test_slow_and_locked_snapshots_are_clear_errors(
    slow_images: SimulatorServer, redis_client: redis.Redis
) -> None:
    adapter = HetznerAdapter.connect(
        slow_images.endpoint, slow_images.token, env="test", redis_client=redis_client
    )
    adapter.action_poll = 0.02
    provider_id = _running(adapter, slow_images)
    with pytest.raises(HetznerError) as slow:
        adapter.create_snapshot(provider_id, description="d", labels=LABELS, timeout=0.2)
    assert (slow.value.code, slow.value.transient) == ("action_timeout", True)
    creating = adapter.list_snapshots("rachel-cloud/image")[0]
    assert creating.status == "creating"
    with pytest.raises(HetznerError) as locked:
        adapter.delete_image(creating.id)
    assert (locked.value.code, locked.value.transient) == ("locked", True)
    with pytest.raises(HetznerError) as busy:
        adapter.poweroff_server(provider_id)
    assert busy.value.code == "locked"


def test_failed_snapshots_and_gone_servers_are_clear_errors(
    adapter: HetznerAdapter, sim: SimulatorServer
) -> None:
    adapter.action_poll = 0.02
    provider_id = _running(adapter, sim)
    sim.set_faults({"action_errors": {"create_image": 1.0}})
    with pytest.raises(HetznerError) as failed:
        adapter.create_snapshot(provider_id, description="d", labels=LABELS, timeout=10)
    assert (failed.value.code, failed.value.transient) == ("action_failed", False)
    assert [i.status for i in adapter.list_snapshots("rachel-cloud/image")] == ["unavailable"]
    adapter.delete_server(provider_id)
    sim.wait_until(lambda: adapter.find_server(1) is None)
    for call in (adapter.shutdown_server, adapter.poweroff_server):
        with pytest.raises(HetznerError) as gone:
            call(provider_id)
        assert (gone.value.code, gone.value.transient) == ("not_found", False)
    with pytest.raises(HetznerError) as no_server:
        adapter.create_snapshot(provider_id, description="d", labels=LABELS, timeout=10)
    assert no_server.value.code == "not_found"
