"""Fleet health end to end: the health task and its jobs against the simulator.

Real parts: the database, Redis, the simulator (its VPSs are real SSH servers on
loopback, its Hetzner API reboots them, its Telegram records what bots send),
the web app for the VPSs' callbacks, RQ workers. Heartbeats are recorded with
the real `HeartbeatStore.record`, read off each VPS's systemd as the agent reads
them (`tests.health_agent`); a server whose heartbeats stop is one the test no
longer beats for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import peewee
import pytest
import redis

from core.cloud import vps_contract as vps
from core.domain.health import Problem
from core.domain.health_metrics import REPAIRS_KEY
from core.domain.herd import HerdStore
from core.domain.lifecycle import Status
from core.domain.notify import OWNER_BACK_TEXT, owner_down_text
from core.store.models import Event, Server
from jobs import health, operator
from sim.rachel8_telegram import ONLINE
from sim.server import SimulatorServer
from sim.vps import Vps
from tests import factories
from tests.pipeline import rachel8_vps
from tests.pipeline.harness import Stack, WebServer, served_stack
from tests.stand_ins import Agents, Receiver, service_of


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def stack(
    db: peewee.Database,
    sim: SimulatorServer,
    web: WebServer,
    redis_client: redis.Redis,
    redis_server_url: str,
    tmp_path: Path,
    receiver: Receiver,
) -> Iterator[Stack]:
    with served_stack(
        tmp_path,
        redis_client,
        redis_server_url,
        sim,
        web,
        RACHEL_BOOT_TIMEOUT="8s",
        RACHEL_HEARTBEAT_MISSING="1s",
        RACHEL_REPAIR_RESTARTS="2",
        RACHEL_HERD_MIN_SERVERS="2",
        RACHEL_HERD_SHARE="0.2",
        RACHEL_TELEGRAM_API_URL=f"{sim.url}/telegram",
        RACHEL_OPERATOR_WEBHOOK_URL=receiver.url,
    ) as built:
        yield built


@pytest.fixture
def agents(redis_client: redis.Redis) -> Agents:
    return Agents(redis_client)


def ready_servers(stack: Stack, agents: Agents, n: int = 1) -> list[Server]:
    ids = []
    for _ in range(n):
        owner = factories.paying_customer(stack.ring)
        outcome = operator.deploy(stack.redis, stack.settings, owner.external_id, "operator:test")
        ids.append(outcome.server_id)
    stack.drain(
        lambda: all(stack.status(i) == Status.READY for i in ids),
        timeout=60,
        what=f"{n} servers to be ready",
    )
    servers = [Server.get_by_id(i) for i in ids]
    for server in servers:
        agents.enroll(server)
    return servers


def machine(stack: Stack, server: Server) -> Vps:
    found = stack.sim.vps(Server.get_by_id(server.id).provider_id or 0)
    assert found is not None
    return found


def beat(stack: Stack, agents: Agents, server: Server, *, down: bool = False) -> None:
    """What the agent would send now: the Rachel8 unit as systemd on the VPS reports it.

    `down`: a crash-looping Rachel8 is up for a moment at each start, and systemd
    restarts it by itself in between (a blip, not an outage, to the health rules);
    like an agent that runs once systemd gave up, send a reading that shows it down.
    """
    deadline = time.monotonic() + 10
    props = rachel8_vps.service(machine(stack, server))
    while down and props["SubState"] in ("running", "auto-restart"):
        assert time.monotonic() < deadline, "Rachel8 never went down"
        time.sleep(0.005)
        props = rachel8_vps.service(machine(stack, server))
    agents.beat(server.id, time.time(), service=service_of(props))


def drive(stack: Stack, until: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Health passes and the jobs they queue, as cron and the workers run them, until `until()`."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        health.run(stack.ctx)
        work(stack)


def settle(stack: Stack, server: Server, running: bool, timeout: float = 10) -> None:
    """Wait until Rachel8 on the VPS is running (or not), as a crash or a start takes a moment."""

    def there() -> bool:
        props = rachel8_vps.service(machine(stack, server))
        return (props["ActiveState"], props["SubState"]) == ("active", "running") or not running

    def gone() -> bool:
        props = rachel8_vps.service(machine(stack, server))
        return props["SubState"] != "running"

    stack.sim.wait_until(there if running else gone, timeout)


def work(stack: Stack) -> None:
    """Run every queued job (the probes, repairs and notifications a pass queued)."""
    stack.drain(lambda: True)


def events(server: Server, kind: str) -> list[str]:
    query = Event.select().where((Event.server == server.id) & (Event.kind == kind))
    return [e.message for e in query.order_by(Event.id)]


def telegram_messages(sim: SimulatorServer) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{sim.url}/_sim/telegram/messages",
        params={"chat_id": str(factories.OWNER_ID)},
        headers={"Authorization": f"Bearer {sim.token}"},
        timeout=5,
    )
    response.raise_for_status()
    # But the simulated Rachel8's own greeting at each start: only what we told the owner.
    messages: list[dict[str, Any]] = [m for m in response.json()["messages"] if m["text"] != ONLINE]
    return messages


def health_of(server: Server) -> tuple[str, str | None]:
    found = Server.get_by_id(server.id)
    return found.health, found.health_reason


def repairs(client: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(REPAIRS_KEY).items()}


def test_a_stopped_service_is_restarted_and_its_owner_told_down_then_back(
    stack: Stack, agents: Agents
) -> None:
    (server,) = ready_servers(stack, agents)
    beat(stack, agents, server)
    health.run(stack.ctx)
    assert health_of(server)[0] == "healthy"

    machine(stack, server).systemd.systemctl(["stop", vps.SERVICE_UNIT])
    beat(stack, agents, server)
    health.run(stack.ctx)
    state, reason = health_of(server)
    assert state == "unhealthy" and reason is not None and "inactive/dead" in reason
    work(stack)
    settle(stack, server, running=True)
    (repair,) = events(server, "repair")
    assert repair.startswith("restarted Rachel8 (restart 1 of 2 in this incident) because")
    assert "active/running" in repair and "next: the next heartbeat tells" in repair
    assert repairs(stack.redis) == {"restart|ok": 1}
    assert [m["text"] for m in telegram_messages(stack.sim)] == [
        owner_down_text(Problem.SERVICE_DOWN)
    ]

    beat(stack, agents, server)
    health.run(stack.ctx)
    assert health_of(server)[0] == "healthy"
    work(stack)
    assert [m["text"] for m in telegram_messages(stack.sim)][-1] == OWNER_BACK_TEXT
    told = events(server, "notify")
    assert told[0].startswith("told the owner: their assistant is down (service_down)")
    assert told[1].startswith("told the owner: their assistant is back")
    assert Server.get_by_id(server.id).owner_notified_down_at is None
    assert [e.split(":")[0] for e in events(server, "health")] == [
        "Rachel8 running, Telegram answering",
        "Rachel8 is not running",
        "Rachel8 running, Telegram answering",
    ]


def test_a_silent_server_is_probed_over_ssh_and_its_down_service_restarted(
    stack: Stack, agents: Agents
) -> None:
    (server,) = ready_servers(stack, agents)
    beat(stack, agents, server)
    health.run(stack.ctx)
    machine(stack, server).systemd.systemctl(["stop", vps.SERVICE_UNIT])
    time.sleep(1.1)  # RACHEL_HEARTBEAT_MISSING: the agent went silent with it
    health.run(stack.ctx)
    assert health_of(server) == ("unhealthy", "no heartbeat for more than 1s; probing over SSH")
    work(stack)  # the probe
    (probe,) = events(server, "probe")
    assert "Rachel8 inactive/dead" in probe and "verdict unhealthy: Rachel8 is not running" in probe
    assert health_of(server)[1] == "Rachel8 is not running: inactive/dead (success, exit status 0)"
    assert stack.redis.hget("rc:health:metrics:probes", "reachable") == b"1"
    # The next passes decide the repair on the probe's finding (or probe again first).
    drive(stack, lambda: bool(events(server, "repair")), "a repair")
    assert events(server, "repair")[0].startswith("restarted Rachel8")
    settle(stack, server, running=True)
    beat(stack, agents, server)
    health.run(stack.ctx)
    assert health_of(server)[0] == "healthy"


def test_failed_restarts_then_a_reboot_then_the_breaker_opens(
    stack: Stack, agents: Agents, receiver: Receiver
) -> None:
    (server,) = ready_servers(stack, agents)
    box = machine(stack, server)
    # Rachel8 refuses its configuration from now on: every start exits 1, reboots too.
    env = rachel8_vps.read(box, rachel8_vps.LAYOUT.env_path)
    broken = env.text.replace("TELEGRAM_BOT_TOKEN=", "TELEGRAM_BOT_TOKEN=x")
    rachel8_vps.write(box, rachel8_vps.LAYOUT.env_path, broken, env.mode, (env.uid, env.gid))
    box.systemd.systemctl(["restart", vps.SERVICE_UNIT])

    steps = []
    for _ in range(4):
        beat(stack, agents, server, down=True)
        summary = health.run(stack.ctx)
        steps += list(summary.acted)
        work(stack)
    assert steps == ["restart", "restart", "reboot", "give_up"]
    repaired = events(server, "repair")
    assert repaired[2].startswith("rebooted the VPS through Hetzner")
    assert "Hetzner action" in repaired[2]
    assert repaired[3].startswith("gave up repairing: circuit breaker open")
    row = Server.get_by_id(server.id)
    assert row.breaker_until is not None and row.repair_restarts == 2
    assert row.repair_rebooted_at is not None and row.health == "unhealthy"
    counts = repairs(stack.redis)
    # A restart succeeds (Rachel8 starts); whether it stays up only a heartbeat tells.
    assert counts.get("restart|ok", 0) + counts.get("restart|failed", 0) == 2
    assert counts["reboot|ok"] == 1 and counts["give_up|ok"] == 1
    (alert,) = [b for b in receiver.bodies if b["what"].startswith("circuit breaker open")]
    assert alert["server_id"] == server.id and alert["server_name"] == row.name
    assert "Rachel8 is not running" in alert["why"] and alert["next"]
    # The breaker holds: more heartbeats of a down service queue nothing.
    beat(stack, agents, server, down=True)
    assert health.run(stack.ctx).acted == {}


def test_the_herd_guard_holds_repairs_while_a_third_is_silent_and_resumes_after(
    stack: Stack, agents: Agents, receiver: Receiver
) -> None:
    fleet = ready_servers(stack, agents, 6)
    for server in fleet:
        beat(stack, agents, server)
    health.run(stack.ctx)
    silent, down, rest = fleet[:2], fleet[2], fleet[3:]
    machine(stack, down).systemd.systemctl(["stop", vps.SERVICE_UNIT])
    time.sleep(1.1)  # the first two go silent (a partition, say)
    for server in [down, *rest]:
        beat(stack, agents, server)
    summary = health.run(stack.ctx)
    assert summary.acted == {"herd_trip": 1}
    assert HerdStore(stack.redis).read()[0].tripped
    work(stack)
    assert rachel8_vps.service(machine(stack, down))["ActiveState"] == "inactive", "held"
    assert all(events(s, "probe") == [] for s in silent), "no SSH storm"
    (alert,) = receiver.bodies
    assert alert["what"] == "herd guard tripped" and alert["server_id"] is None
    assert alert["why"].startswith("3 of 6 servers (50%) turned unhealthy")
    assert telegram_messages(stack.sim) == [], "owners are not told during a herd"

    for server in [*silent, down, *rest]:
        beat(stack, agents, server)
    summary = health.run(stack.ctx)
    assert summary.acted == {"herd_clear": 1, "restart": 1}
    work(stack)
    settle(stack, down, running=True)
    for server in fleet:  # RACHEL_HEARTBEAT_MISSING is 1s here: everyone heartbeats again
        beat(stack, agents, server)
    health.run(stack.ctx)
    assert [health_of(s)[0] for s in fleet] == ["healthy"] * 6
    herd_events = Event.select().where(Event.kind == "herd").order_by(Event.id)
    assert [e.message.split(":")[0] for e in herd_events] == [
        "herd guard tripped",
        "herd guard cleared",
    ]


def test_an_unreachable_vps_is_reset_through_hetzner_then_the_breaker_opens(
    stack: Stack, agents: Agents, receiver: Receiver
) -> None:
    (server,) = ready_servers(stack, agents)
    beat(stack, agents, server)
    health.run(stack.ctx)
    provider_id = Server.get_by_id(server.id).provider_id
    # The VPS stops answering (a frozen kernel, say), and stays so after a reset.
    httpx.put(
        f"{stack.sim.url}/_sim/servers/{provider_id}/faults",
        json={"ssh_refuse": True},
        headers={"Authorization": f"Bearer {stack.sim.token}"},
        timeout=5,
    ).raise_for_status()
    stack.sim.simulator.call_soon(machine(stack, server).stop_ssh())
    time.sleep(1.1)  # silent too
    drive(stack, lambda: len(events(server, "repair")) >= 2, "a reset, then giving up")
    reset, gave_up = events(server, "repair")[:2]
    assert reset.startswith("reset the VPS through Hetzner (hard: it does not answer SSH)")
    assert "still unreachable after a reboot" in gave_up
    assert "because VPS unreachable over SSH (ssh_unreachable)" in reset
    assert gave_up.startswith("gave up repairing: circuit breaker open")
    probes = events(server, "probe")
    assert len(probes) >= 2 and all("unreachable over SSH" in p for p in probes)
    assert health_of(server) == ("unhealthy", "VPS unreachable over SSH (ssh_unreachable)")
    assert repairs(stack.redis) == {"reset|ok": 1, "give_up|ok": 1}
    calls = stack.sim.stats()["requests"]
    assert calls.get("reset_server") == 1 and "soft_reboot_server" not in calls
    assert [b["what"] for b in receiver.bodies] == [
        "circuit breaker open: automatic repair gave up"
    ]
    assert [m["text"] for m in telegram_messages(stack.sim)] == [
        owner_down_text(Problem.UNREACHABLE)
    ]
    # No more probes or repairs while the breaker is open.
    probed = len(probes)
    time.sleep(1.1)
    health.run(stack.ctx)
    work(stack)
    assert len(events(server, "probe")) == probed and len(events(server, "repair")) == 2
