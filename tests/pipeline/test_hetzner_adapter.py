"""The Hetzner adapter against the simulator, through the real hcloud SDK."""

from __future__ import annotations

import socket
import time

import pytest
import redis

from core.cloud.hcloud_internals import sdk_session
from core.cloud.hetzner import HetznerAdapter
from core.cloud.provider import LABEL_MANAGED, LABEL_SERVER, CreateSpec, HetznerError
from sim.server import SimulatorServer

RANGES = ("203.0.113.0/24", "2001:db8::/32")


def spec(server_id: int = 1, *, maybe_exists: bool = False, name: str | None = None) -> CreateSpec:
    return CreateSpec(
        server_id=server_id,
        customer_id=10 + server_id,
        name=name or f"test-{server_id}",
        server_type="cx23",
        image="debian-12",
        location="fsn1",
        user_data="#cloud-config\n{}\n",
        env="test",
        maybe_exists=maybe_exists,
    )


def prepared(adapter: HetznerAdapter) -> tuple[int, int]:
    fw = adapter.ensure_firewall("test-ssh", RANGES)
    key = adapter.ensure_fleet_key("test-fleet", _pubkey)
    return fw, key


def _pubkey() -> str:
    from core.security.crypto import generate_ssh_keypair

    return generate_ssh_keypair().public_openssh


def test_firewall_admits_ssh_only_and_is_looked_up_once(
    adapter: HetznerAdapter, sim: SimulatorServer, redis_client: redis.Redis
) -> None:
    fw = adapter.ensure_firewall("test-ssh", RANGES)
    calls = adapter.call_count()
    assert adapter.ensure_firewall("test-ssh", RANGES) == fw
    assert adapter.call_count() == calls, "the second lookup is served from the cache"
    other = HetznerAdapter.connect(sim.endpoint, sim.token, env="test", redis_client=redis_client)
    assert other.ensure_firewall("test-ssh", RANGES) == fw
    assert other.call_count() == 0, "another worker reads the id from Redis"
    rules = adapter.client.firewalls.get_by_id(fw).rules
    assert rules is not None
    assert [(r.direction, r.protocol, r.port, sorted(r.source_ips)) for r in rules] == [
        ("in", "tcp", "22", sorted(RANGES))
    ]


def test_firewall_creation_race_is_resolved(adapter: HetznerAdapter) -> None:
    # Another worker creates the firewall between our lookup and our create.
    real_lookup = adapter.client.firewalls.get_by_name
    adapter.client.firewalls.create(name="test-ssh")
    first = [True]

    def lookup(name: str):  # type: ignore[no-untyped-def]
        if first.pop() if first else False:
            return None
        return real_lookup(name)

    adapter.client.firewalls.get_by_name = lookup  # type: ignore[method-assign]
    fw = adapter.ensure_firewall("test-ssh", RANGES)
    assert fw == real_lookup("test-ssh").id  # type: ignore[union-attr]
    assert len(adapter.client.firewalls.get_all(name="test-ssh")) == 1


def test_create_is_one_call_and_labels_the_server(adapter: HetznerAdapter) -> None:
    fw, key = prepared(adapter)
    before = adapter.call_count()
    server, adopted = adapter.create_server(spec(1), fw, key)
    assert adapter.call_count() - before == 1
    assert not adopted and server.ipv4 and server.status in ("initializing", "running")
    assert server.labels[LABEL_MANAGED] == "true" and server.labels[LABEL_SERVER] == "1"
    assert server.server_id == 1
    bound = adapter.client.servers.get_by_id(server.id)
    assert [f.firewall.id for f in bound.public_net.firewalls] == [fw]  # type: ignore[union-attr]


def test_a_retried_create_adopts_instead_of_duplicating(adapter: HetznerAdapter) -> None:
    fw, key = prepared(adapter)
    first, _ = adapter.create_server(spec(2), fw, key)
    # The run that may have reached Hetzner looks up by label first...
    again, adopted = adapter.create_server(spec(2, maybe_exists=True), fw, key)
    assert adopted and again.id == first.id
    # ...and one that did not know reads uniqueness_error as "adopt it".
    third, adopted = adapter.create_server(spec(2), fw, key)
    assert adopted and third.id == first.id
    assert len(adapter.list_managed()) == 1


def test_a_name_held_by_a_foreign_server_is_permanent(adapter: HetznerAdapter) -> None:
    fw, key = prepared(adapter)
    from hcloud.images import Image
    from hcloud.server_types import ServerType

    adapter.client.servers.create(
        name="test-3", server_type=ServerType(name="cx23"), image=Image(name="debian-12")
    )
    with pytest.raises(HetznerError) as info:
        adapter.create_server(spec(3), fw, key)
    assert info.value.code == "uniqueness_error" and not info.value.transient


def test_delete_and_404_is_success(adapter: HetznerAdapter) -> None:
    fw, key = prepared(adapter)
    server, _ = adapter.create_server(spec(4), fw, key)
    assert adapter.delete_server(server.id) is True
    deadline = time.monotonic() + 10
    while adapter.find_server(4) is not None and time.monotonic() < deadline:
        time.sleep(0.05)  # the delete action runs for a moment, as on Hetzner
    assert adapter.find_server(4) is None
    assert adapter.delete_server(server.id) is False


@pytest.mark.parametrize(
    ("code", "transient"),
    [
        ("rate_limit_exceeded", True),
        ("unavailable", True),
        ("server_error", True),
        ("locked", True),
        ("conflict", True),
        ("invalid_input", False),
        ("forbidden", False),
        ("resource_limit_exceeded", False),
    ],
)
def test_errors_say_transient_or_permanent_without_sdk_retries(
    adapter: HetznerAdapter, sim: SimulatorServer, code: str, transient: bool
) -> None:
    fw, key = prepared(adapter)
    sim.set_faults({"errors": {"create_server": {"code": code, "rate": 1.0}}})
    before = adapter.call_count()
    with pytest.raises(HetznerError) as info:
        adapter.create_server(spec(5), fw, key)
    assert info.value.code == code and info.value.transient is transient
    assert info.value.correlation_id
    assert adapter.call_count() - before == 1, "no retry inside the SDK: jobs reschedule"


def test_rate_limit_headers_feed_a_shared_budget(
    adapter: HetznerAdapter, sim: SimulatorServer, redis_client: redis.Redis
) -> None:
    prepared(adapter)
    budget = adapter.budget
    assert budget.limit == 3600 and budget.remaining is not None and budget.reset
    other = HetznerAdapter.connect(sim.endpoint, sim.token, env="test", redis_client=redis_client)
    assert other.shared_budget().remaining == budget.remaining
    other.require_budget(reserve=0)
    with pytest.raises(HetznerError) as info:
        other.require_budget(reserve=budget.remaining + 10)  # type: ignore[operator]
    assert info.value.code == "rate_limit_reserve" and info.value.transient
    assert info.value.retry_after and info.value.retry_after > 0


def test_429_carries_a_retry_hint(adapter: HetznerAdapter, sim: SimulatorServer) -> None:
    fw, key = prepared(adapter)
    sim.set_faults({"rate_limit_burst": 1})
    with pytest.raises(HetznerError) as info:
        adapter.create_server(spec(6), fw, key)
    assert info.value.code == "rate_limit_exceeded" and info.value.retry_after


def test_unreachable_api_is_a_transient_network_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    adapter = HetznerAdapter.connect(f"http://127.0.0.1:{port}/v1", "token", env="test", timeout=2)
    with pytest.raises(HetznerError) as info:
        adapter.find_server(1)
    assert info.value.code == "network_error" and info.value.transient


def _clear_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def test_the_environment_s_proxy_settings_are_read_once_and_used(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _clear_proxy_environment(monkeypatch)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    proxied = HetznerAdapter.connect(sim.endpoint, sim.token, env="test", timeout=2)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    bypassing = HetznerAdapter.connect(sim.endpoint, sim.token, env="test", timeout=2)
    _clear_proxy_environment(monkeypatch)  # settled at connect: later changes are not read
    with pytest.raises(HetznerError) as info:
        proxied.find_server(1)  # through the proxy, which is not there
    assert info.value.code == "network_error"
    assert bypassing.find_server(1) is None  # NO_PROXY honoured: straight to the API


def test_a_ca_bundle_from_the_environment_is_kept(
    sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    adapter = HetznerAdapter.connect(sim.endpoint, sim.token, env="test")
    session = sdk_session(adapter.client)
    assert session.verify == "/etc/ssl/certs/ca-certificates.crt" and not session.trust_env


@pytest.mark.parametrize(("hard", "command"), [(False, "reboot_server"), (True, "reset_server")])
def test_reboot_and_reset_are_one_call_each(
    adapter: HetznerAdapter, sim: SimulatorServer, hard: bool, command: str
) -> None:
    fw, key = prepared(adapter)
    server, _ = adapter.create_server(spec(7), fw, key)
    deadline = time.monotonic() + 10
    while adapter.client.servers.get_by_id(server.id).status != "running":
        assert time.monotonic() < deadline, "the server never ran"
        time.sleep(0.05)
    before = adapter.call_count()
    action_id = adapter.reboot_server(server.id, hard=hard)
    assert adapter.call_count() - before == 1
    assert adapter.client.actions.get_by_id(action_id).command == command


def test_rebooting_a_gone_server_is_permanent_and_a_locked_one_transient(
    adapter: HetznerAdapter, sim: SimulatorServer
) -> None:
    with pytest.raises(HetznerError) as gone:
        adapter.reboot_server(999_999, hard=False)
    assert gone.value.code == "not_found" and not gone.value.transient
    assert gone.value.message.startswith("reboot server: not_found")
    fw, key = prepared(adapter)
    server, _ = adapter.create_server(spec(8), fw, key)
    sim.set_faults({"errors": {"reset_server": {"code": "locked", "rate": 1.0}}})
    with pytest.raises(HetznerError) as locked:
        adapter.reboot_server(server.id, hard=True)
    assert locked.value.code == "locked" and locked.value.transient
