"""The health agent's credential through the real pipeline: one per injection, armed, revoked.

Deploys run through the simulator, the web app's callback and the workers;
what the VPS was given is read from its files (the agent's env), what the
control plane keeps from the row and Redis.
"""

from __future__ import annotations

import shlex

import pytest

from core.cloud import vps_contract as vps
from core.domain import heartbeats
from core.domain.lifecycle import Status
from core.store.models import Event, Server
from jobs import operator
from tests import factories
from tests.pipeline import rachel8_vps
from tests.pipeline.harness import Stack


@pytest.fixture
def stack(served: Stack) -> Stack:
    return served


def _deploy(stack: Stack) -> int:
    owner = factories.paying_customer(stack.ring)
    outcome = operator.deploy(stack.redis, stack.settings, owner.external_id, "operator:test")
    return outcome.server_id


def _agent_env(stack: Stack, row: Server) -> dict[str, str]:
    machine = stack.sim.vps(row.provider_id or 0)
    assert machine is not None
    written = rachel8_vps.read(machine, vps.AGENT_ENV_PATH)
    assert (written.mode, written.uid, written.gid) == (0o600, 0, 0)
    words = [shlex.split(line)[0] for line in written.text.splitlines()]
    return dict(word.split("=", 1) for word in words)


def _registration(stack: Stack, server_id: int) -> str | None:
    value = stack.redis.get(f"{heartbeats.AUTH_PREFIX}{server_id}")
    return value.decode() if isinstance(value, bytes) else value


def test_each_injection_gives_a_new_credential_armed_for_the_servers_address(
    stack: Stack,
) -> None:
    server_id = _deploy(stack)
    row = stack.wait_status(server_id, Status.READY)
    env = _agent_env(stack, row)
    assert env[vps.HEARTBEAT_URL_VAR] == heartbeats.heartbeat_url(
        stack.settings.public_url, server_id
    )
    assert env[vps.TELEGRAM_API_VAR] == stack.settings.telegram_api_url
    first = env[vps.HEARTBEAT_CREDENTIAL_VAR]
    # The row keeps only the hash; Redis has it bound to the server's address.
    assert row.heartbeat_credential_hash == heartbeats.hash_credential(first)
    assert _registration(stack, server_id) == f"{row.heartbeat_credential_hash} {row.ipv4}"
    machine = stack.sim.vps(row.provider_id or 0)
    assert machine is not None and vps.AGENT_TIMER_UNIT in machine.systemd.enabled
    assert not Event.select().where((Event.server == server_id) & (Event.kind == "agent")).count()

    # A re-injection replaces it: the old credential is void.
    operator.reinject(stack.redis, server_id, "operator:test")
    assert stack.status(server_id) == Status.INJECTING_SECRETS
    row = stack.wait_status(server_id, Status.READY)
    second = _agent_env(stack, row)[vps.HEARTBEAT_CREDENTIAL_VAR]
    assert second != first
    assert row.heartbeat_credential_hash == heartbeats.hash_credential(second)
    assert _registration(stack, server_id) == f"{row.heartbeat_credential_hash} {row.ipv4}"

    # Deprovisioned: revoked in Redis and forgotten by the row, its health too.
    Server.update(health="healthy", health_reason="fine").where(Server.id == server_id).execute()
    operator.deprovision(stack.redis, server_id, "operator:test")
    row = stack.wait_status(server_id, Status.DELETED)
    assert _registration(stack, server_id) is None
    assert row.heartbeat_credential_hash is None
    assert (row.health, row.health_reason) == ("unknown", None)


def test_a_deprovision_revokes_the_credential_before_the_vps_is_gone(stack: Stack) -> None:
    server_id = _deploy(stack)
    row = stack.wait_status(server_id, Status.READY)
    assert _registration(stack, server_id) is not None
    # Heartbeats stored for it are dropped too.
    stack.redis.hset(heartbeats.LATEST_KEY, str(server_id), b"{}")
    stack.redis.zadd(heartbeats.SEEN_KEY, {str(server_id): 1.0})
    # Hetzner refuses the delete for now: the server stays in deprovisioning.
    stack.sim.set_faults({"errors": {"delete_server": {"code": "server_error", "rate": 1.0}}})
    operator.deprovision(stack.redis, server_id, "operator:test")
    stack.drain(
        lambda: (
            Event.select()
            .where((Event.server == server_id) & (Event.kind.in_(("retry", "error"))))
            .count()
            > 0
        ),
        what="a failed delete",
    )
    assert stack.status(server_id) == Status.DEPROVISIONING
    assert _registration(stack, server_id) is None
    assert stack.redis.hget(heartbeats.LATEST_KEY, str(server_id)) is None
    assert stack.redis.zscore(heartbeats.SEEN_KEY, str(server_id)) is None
    assert row.provider_id in stack.provider_servers()


def test_a_vps_whose_agent_will_not_start_is_still_ready_and_says_why(stack: Stack) -> None:
    server_id = _deploy(stack)
    row = stack.wait_status(server_id, Status.READY)
    machine = stack.sim.vps(row.provider_id or 0)
    assert machine is not None
    # As on a VPS created before the agent existed: no timer unit.
    machine.fs.real(vps.AGENT_TIMER_PATH, "/").unlink()
    machine.systemd.enabled.discard(vps.AGENT_TIMER_UNIT)
    operator.reinject(stack.redis, server_id, "operator:test")
    row = stack.wait_status(server_id, Status.READY)
    (event,) = Event.select().where((Event.server == server_id) & (Event.kind == "agent"))
    assert event.message.startswith("the health agent did not start: ")
    assert f"systemctl enable --now {vps.AGENT_TIMER_UNIT}` exited 1" in event.message
    credential = _agent_env(stack, row)[vps.HEARTBEAT_CREDENTIAL_VAR]
    assert credential not in event.message
    # The credential is still armed: a timer started by hand later heartbeats at once.
    assert row.heartbeat_credential_hash == heartbeats.hash_credential(credential)
    assert _registration(stack, server_id) == f"{row.heartbeat_credential_hash} {row.ipv4}"
