"""A stale cached firewall or fleet-key id must not fail a customer's server (issue 21, item 1).

The ids of the shared firewall and the fleet SSH key are cached in Redis for
every worker. They go stale when someone deletes the objects in the Hetzner
console, or when a persisted Redis outlives the simulator that handed them out
(`make run` twice on one data directory). Hetzner then answers the create with
`invalid_input` naming the field; creating must look the objects up again
(recreating them) and retry once, over real HTTP against the simulator.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
import redis
from hcloud.firewalls import Firewall
from hcloud.ssh_keys import SSHKey

from core.cloud.hetzner import HetznerAdapter
from core.cloud.provider import CreateSpec, HetznerError
from core.domain.lifecycle import Status
from core.security.crypto import generate_ssh_keypair
from core.store.models import Event, Server
from jobs.context import use_context
from sim.config import SimConfig
from sim.server import SimulatorServer
from tests.pipeline.harness import Stack, build_stack
from tests.pipeline.test_phases import deploy


@pytest.fixture
def stack(
    db: peewee.Database, tmp_path: Path, redis_client: redis.Redis, sim: SimulatorServer
) -> Iterator[Stack]:
    yield build_stack(tmp_path, redis_client, sim)
    use_context(None)


def project_objects(stack: Stack) -> tuple[list[int], list[int]]:
    client = stack.ctx.hetzner.client
    return [f.id or 0 for f in client.firewalls.get_all()], [
        k.id or 0 for k in client.ssh_keys.get_all()
    ]


def assert_created_without_failure(row: Server) -> None:
    assert row.status == Status.CLOUD_INIT and row.provider_id is not None
    assert row.attempt == 1 and row.failed_phase is None
    retries = Event.select().where((Event.server == row.id) & (Event.kind == "retry"))
    assert not [e.message for e in retries]


@pytest.mark.parametrize("deleted", ["ssh_key", "firewall", "both"])
def test_objects_deleted_in_the_console_are_recreated(stack: Stack, deleted: str) -> None:
    first = stack.wait_status(deploy(stack).id, Status.CLOUD_INIT)
    (firewall_id,), (key_id,) = project_objects(stack)
    client = stack.ctx.hetzner.client
    if deleted in ("ssh_key", "both"):
        client.ssh_keys.delete(SSHKey(id=key_id))
    if deleted in ("firewall", "both"):
        client.firewalls.delete(Firewall(id=firewall_id))

    row = stack.wait_status(deploy(stack).id, Status.CLOUD_INIT, Status.FAILED)

    assert_created_without_failure(row)
    firewalls, keys = project_objects(stack)
    assert len(firewalls) == 1 and len(keys) == 1  # recreated once, not duplicated
    assert (firewalls[0] != firewall_id) == (deleted != "ssh_key")
    assert (keys[0] != key_id) == (deleted != "firewall")
    assert sorted(stack.provider_servers()) == sorted(
        [first.provider_id or 0, row.provider_id or 0]
    )


def test_ids_cached_by_a_previous_simulator_are_looked_up_again(
    db: peewee.Database, tmp_path: Path, redis_client: redis.Redis, sim: SimulatorServer
) -> None:
    # `make run` twice on one data directory: the Redis survives, the simulator does not.
    before = build_stack(tmp_path / "first", redis_client, sim)
    before.wait_status(deploy(before).id, Status.CLOUD_INIT)
    with SimulatorServer(SimConfig(seed=8, time_scale=0.01)) as fresh:
        after = build_stack(tmp_path / "second", redis_client, fresh)
        try:
            # The second simulator has ids of its own before ours are recreated,
            # so a stale id cannot happen to name the new objects by chance.
            client = after.ctx.hetzner.client
            client.ssh_keys.create(name="someone-else", public_key=_other_key())
            row = after.wait_status(deploy(after).id, Status.CLOUD_INIT, Status.FAILED)
            assert_created_without_failure(row)
            firewalls, keys = project_objects(after)
            assert len(firewalls) == 1 and len(keys) == 2
            assert after.provider_servers() == [row.provider_id]
        finally:
            use_context(None)


def test_the_simulator_answers_an_unknown_key_as_hetzner_does(
    adapter: HetznerAdapter,
) -> None:
    firewall_id = adapter.ensure_firewall("t-ssh", ("0.0.0.0/0",))
    key_id = adapter.ensure_fleet_key("t-fleet", _other_key)
    adapter.client.ssh_keys.delete(SSHKey(id=key_id))
    spec = CreateSpec(
        server_id=1,
        customer_id=1,
        name="t-1",
        server_type="cx23",
        image="debian-12",
        location="fsn1",
        user_data="#cloud-config\n",
        env="test",
    )
    with pytest.raises(HetznerError) as caught:
        adapter.create_server(spec, firewall_id, key_id)  # no refresh: the error stands
    error = caught.value
    assert error.code == "invalid_input" and not error.transient
    assert "field 'ssh_keys'" in error.message
    details = getattr(error.__cause__, "details", None)
    assert details == {
        "fields": [{"name": "ssh_keys", "messages": [f"SSH key '{key_id}' not found"]}]
    }
    # The cache is dropped all the same, so the next create looks the objects up.
    assert adapter.ensure_fleet_key("t-fleet", _other_key) != key_id


def _other_key() -> str:
    return generate_ssh_keypair().public_openssh
