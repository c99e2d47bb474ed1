"""Fleet health end to end: each fault of issue 22, injected only through the simulator.

Real parts: servers deployed through the pipeline (the simulator's Hetzner API,
cloud-init calling back to the served web app, the SSH injection arming the
health agent); each VPS's agent POSTs real heartbeats to the web app every
RACHEL_HEARTBEAT_INTERVAL (at the simulator's time scale); the health task runs
as the cron runs it, its probes, repairs and notifications on a worker.
Faults arrive only as an operator or the outside world would cause them: the
simulator's admin API over HTTP (`/_sim/vps/faults`, `/_sim/telegram/revoke`)
and the Bot API's own `setWebhook`. Each test ends in the expected health, the
repair Events on the timeline, what the owner was told through their bot and
what the operators' webhook received; and no SSH connection reaches a server
while it is healthy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import peewee
import pytest
import redis

from core.domain.health import Problem
from core.domain.herd import HerdStore
from core.domain.notify import OWNER_BACK_TEXT, owner_down_text
from core.platform.dev_secrets import api_keys
from core.store.models import Server
from sim.server import SimulatorServer
from tests.pipeline.fleet import Fleet, served_fleet
from tests.pipeline.harness import WebServer
from tests.stand_ins import Receiver

#: Seconds (of the control plane's clock) without a heartbeat before a server is probed.
MISSING = 3.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def fleet(
    db: peewee.Database,
    sim: SimulatorServer,
    web: WebServer,
    redis_client: redis.Redis,
    redis_server_url: str,
    tmp_path: Path,
    receiver: Receiver,
) -> Iterator[Fleet]:
    with served_fleet(
        tmp_path,
        redis_client,
        redis_server_url,
        sim,
        web,
        receiver,
        RACHEL_BOOT_TIMEOUT="8s",
        # At the simulator's time scale (0.01): a heartbeat every 0.6 s.
        RACHEL_HEARTBEAT_INTERVAL="60s",
        RACHEL_HEARTBEAT_MISSING=f"{MISSING:.0f}s",
        RACHEL_HEALTH_INTERVAL="1s",
        RACHEL_REPAIR_RESTARTS="2",
        RACHEL_REPAIR_WINDOW="10m",
        RACHEL_REPAIR_COOLDOWN="10m",
        RACHEL_HERD_SHARE="0.2",
        RACHEL_HERD_MIN_SERVERS="2",
        RACHEL_HERD_WINDOW="5m",
    ) as fleet:
        yield fleet


#: How each repair Event begins (`jobs.repair`, and the customer's own restart).
STEPS = {
    "restarted Rachel8 ": "restart",
    "restarted the health agent ": "restart_agent",
    "rebooted the VPS through Hetzner ": "reboot",
    "reset the VPS through Hetzner ": "reset",
    "gave up repairing: circuit breaker open ": "give_up",
    "restart requested: ": "customer_restart",
}


def repairs(fleet: Fleet, server: Server) -> list[str]:
    """The repair steps on the server's timeline, oldest first."""
    done = []
    for message in fleet.events(server, "repair"):
        (step,) = [name for start, name in STEPS.items() if message.startswith(start)]
        done.append(step)
    return done


def reboots(fleet: Fleet) -> tuple[int, int]:
    """Hetzner reboots and resets asked of the simulator so far."""
    return fleet.hetzner_calls("soft_reboot_server"), fleet.hetzner_calls("reset_server")


def test_crash_once_systemd_restarts_it_degraded_for_a_heartbeat_no_repair(
    fleet: Fleet,
) -> None:
    (server,) = fleet.deploy()
    ssh = fleet.ssh_connections(server)
    # Right after a heartbeat: the next one comes after systemd's restart (RestartSec).
    fleet.fresh_heartbeat(server)
    assert fleet.fault("crash_once", server) == [server.name]
    fleet.watch(lambda: fleet.timeline(server) == ["healthy", "degraded", "healthy"], "a blip")
    assert fleet.events(server, "health")[1] == "systemd restarted Rachel8 since the last heartbeat"
    box = fleet.box(server)
    assert box["rachel8"]["NRestarts"] == "1" and box["faults"] == []  # spent
    assert "TypeError: undefined is not an object" in "\n".join(box["rachel8"]["journal_tail"])
    assert fleet.greetings(server) == 2, "started twice: by the injection, then by systemd"
    fleet.heartbeats(server, 2)
    assert fleet.timeline(server)[-1] == "healthy"
    assert fleet.events(server, "probe") == [] and repairs(fleet, server) == []
    assert fleet.events(server, "notify") == [] and fleet.owner_messages(server) == []
    assert fleet.alerts(server) == [] and reboots(fleet) == (0, 0)
    assert fleet.ssh_connections(server) == ssh, "no SSH connection to a healthy server"


def test_crash_loop_restarts_then_a_reboot_then_the_breaker_opens(fleet: Fleet) -> None:
    (server,) = fleet.deploy()
    ssh = fleet.ssh_connections(server)
    fleet.fault("crash_loop", server)
    fleet.watch(lambda: "give_up" in repairs(fleet, server), "the breaker to open")
    assert repairs(fleet, server) == ["restart", "restart", "reboot", "give_up"]
    assert reboots(fleet) == (1, 0), "a soft reboot: the VPS answers SSH"
    row = fleet.row(server)
    assert row.breaker_until is not None and row.repair_restarts == 2
    assert row.repair_rebooted_at is not None
    assert row.health == "unhealthy" and (row.health_reason or "").startswith(
        "Rachel8 is not running: "
    )
    assert fleet.alerts(server) == ["circuit breaker open: automatic repair gave up"]
    assert fleet.owner_messages(server) == [owner_down_text(Problem.SERVICE_DOWN)]
    # Two restarts, each with its ask for a heartbeat RACHEL_SERVICE_SETTLE later.
    assert fleet.ssh_connections(server) == [ssh[0] + 4], "two restarts, nothing else"
    assert fleet.box(server)["faults"] == ["crash_loop"], "a reboot does not cure it"
    # The breaker holds: heartbeats of a down Rachel8 go on, and nothing more is done.
    fleet.heartbeats(server, 3)
    assert repairs(fleet, server) == ["restart", "restart", "reboot", "give_up"]
    assert fleet.events(server, "probe") == [] and reboots(fleet) == (1, 0)
    assert fleet.ssh_connections(server) == [ssh[0] + 4]
    assert len(fleet.alerts(server)) == 1 and len(fleet.owner_messages(server)) == 1
    # A heartbeat may catch systemd between two of its own restarts: a degraded blip,
    # then unhealthy once it gives up. Once unhealthy, it never reads as a blip again.
    timeline = fleet.timeline(server)
    after = timeline[2:] if timeline[1] == "degraded" else timeline[1:]
    assert timeline[0] == "healthy" and after and set(after) == {"unhealthy"}


def test_a_frozen_vps_is_probed_reset_through_hetzner_and_healthy_again(fleet: Fleet) -> None:
    (server,) = fleet.deploy()
    fleet.fault("freeze", server)
    # The probe waits out its SSH timeout (the box accepts, but never answers).
    fleet.watch(lambda: repairs(fleet, server) == ["reset"], "the reset", timeout=60)
    fleet.watch(lambda: fleet.health(server)[0] == "healthy", "healthy again")
    assert fleet.box(server)["faults"] == [], "the reset cleared it"
    assert fleet.timeline(server) == ["healthy", "unhealthy", "unhealthy", "healthy"]
    silent, unreachable = fleet.events(server, "health")[1:3]
    assert silent == f"no heartbeat for more than {MISSING:.0f}s; probing over SSH"
    assert unreachable == "VPS unreachable over SSH (ssh_unreachable)"
    probe = fleet.events(server, "probe")[0]  # (another, should the boot be slow)
    assert "unreachable over SSH" in probe and "verdict unhealthy" in probe
    assert reboots(fleet) == (0, 1), "a hard reset: it does not answer SSH"
    assert fleet.owner_messages(server) == [
        owner_down_text(Problem.UNREACHABLE),
        OWNER_BACK_TEXT,
    ]
    assert fleet.alerts(server) == []
    assert fleet.row(server).owner_notified_down_at is None
    ssh = fleet.ssh_connections(server)
    fleet.heartbeats(server, 2)
    assert fleet.ssh_connections(server) == ssh, "no SSH connection to a healthy server"


def test_lost_heartbeats_restart_the_agent_never_rachel8_nor_the_vps(fleet: Fleet) -> None:
    (server,) = fleet.deploy()
    ssh = fleet.ssh_connections(server)[0]
    fleet.fault("heartbeat_loss", server)
    fleet.watch(lambda: "give_up" in repairs(fleet, server), "the breaker to open")
    # The agent restarted as often as the policy allows, then the breaker: no reboot.
    assert repairs(fleet, server) == ["restart_agent", "restart_agent", "give_up"]
    assert fleet.timeline(server)[:3] == ["healthy", "unhealthy", "degraded"]
    probes = fleet.events(server, "probe")
    assert len(probes) == 3 and all("Rachel8 active/running" in p for p in probes)
    assert all("verdict degraded: agent silent" in p for p in probes)
    assert fleet.health(server)[1] == (
        "agent silent: Rachel8 runs, but no heartbeat arrives (timer active, last run exit-code)"
    )
    assert fleet.alerts(server) == ["circuit breaker open: automatic repair gave up"]
    # Three probes and two agent restarts over SSH; Rachel8 itself never touched.
    assert fleet.ssh_connections(server) == [ssh + 5]
    assert fleet.box(server)["rachel8"]["NRestarts"] == "0" and fleet.greetings(server) == 1
    assert reboots(fleet) == (0, 0)
    assert fleet.owner_messages(server) == [], "the assistant worked all along"

    fleet.clear("heartbeat_loss", server)
    fleet.watch(lambda: fleet.health(server)[0] == "healthy", "heartbeats again")
    assert fleet.timeline(server)[-2:] == ["degraded", "healthy"]
    fleet.heartbeats(server, 2)
    assert fleet.ssh_connections(server) == [ssh + 5], "no SSH connection to a healthy server"


def test_a_revoked_token_is_unhealthy_told_to_operators_and_nothing_restarted(
    fleet: Fleet,
) -> None:
    (server,) = fleet.deploy()
    ssh = fleet.ssh_connections(server)
    answer = fleet.admin.post("/telegram/revoke", json={"token": fleet.token(server)})
    assert answer.status_code == 200, answer.text
    fleet.watch(lambda: len(fleet.events(server, "notify")) == 2, "the owner and operators told")
    assert fleet.health(server) == (
        "unhealthy",
        "bot token revoked: Telegram answers getMe with Unauthorized",
    )
    told, alerted = fleet.events(server, "notify")
    # The owner's bot is the revoked one: Telegram refuses it, and the Event says so.
    assert told == (
        "could not tell the owner: their assistant is down (token_revoked): "
        "Telegram answered 401 (Unauthorized)"
    )
    assert alerted.startswith("operators alerted: unhealthy: token revoked: ")
    assert fleet.alerts(server) == ["unhealthy: token revoked"]
    (body,) = [b for b in fleet.receiver.bodies if b["server_id"] == server.id]
    assert "the owner cannot be told through a revoked bot" in body["next"]
    assert fleet.owner_messages(server) == []
    # Rachel8 exits on its 401 and crash-loops: no restart by us would help.
    fleet.heartbeats(server, 3)
    assert fleet.timeline(server) == ["healthy", "unhealthy"]
    assert fleet.box(server)["rachel8"]["Result"] == "start-limit-hit"
    assert repairs(fleet, server) == [] and fleet.events(server, "probe") == []
    assert fleet.ssh_connections(server) == ssh and reboots(fleet) == (0, 0)
    assert len(fleet.alerts(server)) == 1


def test_a_webhook_set_makes_rachel8_exit_and_its_restart_deletes_it(fleet: Fleet) -> None:
    (server,) = fleet.deploy()
    ssh = fleet.ssh_connections(server)
    # Right after a heartbeat: the next one comes after systemd restarted Rachel8.
    fleet.fresh_heartbeat(server)
    answer = fleet.telegram(server, "setWebhook", url="https://example.com/stolen")
    assert answer == {"ok": True, "result": True, "description": "Webhook was set"}
    fleet.watch(lambda: fleet.timeline(server) == ["healthy", "degraded", "healthy"], "a blip")
    # grammY's poll ended on the webhook (409), Rachel8 exited 1, and its restart (grammY's
    # bot.start()) deleted the webhook: the health rules see a restart, not a webhook.
    assert fleet.events(server, "health")[1] == "systemd restarted Rachel8 since the last heartbeat"
    journal = "\n".join(fleet.box(server)["rachel8"]["journal_tail"])
    assert "(409: Conflict: terminated by setWebhook request)" in journal
    assert fleet.telegram(server, "getWebhookInfo")["result"]["url"] == ""
    assert fleet.greetings(server) == 2
    assert repairs(fleet, server) == [] and fleet.events(server, "notify") == []
    assert fleet.owner_messages(server) == [] and fleet.alerts(server) == []
    assert fleet.ssh_connections(server) == ssh, "no SSH connection to a healthy server"


def test_a_second_poller_is_unhealthy_with_its_409_and_not_restarted_over_and_over(
    fleet: Fleet,
) -> None:
    (server,) = fleet.deploy()
    ssh = fleet.ssh_connections(server)
    fleet.fault("conflict", server)
    fleet.watch(lambda: fleet.alerts(server) != [], "operators alerted")
    conflict = ("unhealthy", "another process polls this bot (409 Conflict)")
    assert fleet.health(server) == conflict
    # Rachel8 crash-loops into its start limit; the 409 stays the reason, heartbeat after
    # heartbeat, and no restart or reboot is tried.
    fleet.heartbeats(server, 4)
    assert fleet.box(server)["rachel8"]["Result"] == "start-limit-hit"
    assert fleet.health(server) == conflict and fleet.timeline(server) == ["healthy", "unhealthy"]
    assert repairs(fleet, server) == [] and fleet.events(server, "probe") == []
    assert fleet.ssh_connections(server) == ssh and reboots(fleet) == (0, 0)
    assert fleet.alerts(server) == ["unhealthy: conflict"]
    assert fleet.owner_messages(server) == [owner_down_text(Problem.CONFLICT)]

    # The owner stops the other program and restarts their assistant from the dashboard.
    fleet.clear("conflict", server)
    api = httpx.post(
        f"{fleet.stack.settings.public_url}/api/servers/{server.id}/restart",
        headers={"X-API-Key": api_keys(fleet.stack.settings)[0]},
        timeout=60,
    )
    assert api.status_code == 200, api.text
    fleet.watch(lambda: fleet.health(server)[0] == "healthy", "healthy again")
    assert repairs(fleet, server) == ["customer_restart"]
    assert fleet.owner_messages(server) == [owner_down_text(Problem.CONFLICT), OWNER_BACK_TEXT]


def test_the_herd_guard_holds_repairs_while_a_third_is_partitioned_and_resumes_after(
    fleet: Fleet,
) -> None:
    servers = fleet.deploy(6)
    names = {fleet.row(s).name: s for s in servers}
    ssh = {s.id: fleet.ssh_connections(s)[0] for s in servers}
    cut = [names[name] for name in fleet.fault("partition", share=0.33, seed=7)]
    assert len(cut) == 2
    # The cron's next pass comes once both fell silent (one worker here: a probe of the
    # first, hanging for its SSH timeout, would hold up the pass that trips the guard).
    fleet.wait_silent(cut, MISSING)
    fleet.watch(lambda: HerdStore(fleet.stack.redis).read()[0].tripped, "the guard to trip")
    (tripped,) = fleet.fleet_events("herd")
    assert tripped.startswith("herd guard tripped: 2 of 6 servers (33%) turned unhealthy")
    # Meanwhile a healthy server's Rachel8 crash-loops into its start limit: it waits too.
    down = next(s for s in servers if s not in cut)
    fleet.fault("crash_loop", down)
    fleet.watch(lambda: fleet.health(down)[0] == "unhealthy", "Rachel8 down elsewhere")
    fleet.heartbeats(down, 3)
    assert fleet.box(down)["rachel8"]["Result"] == "start-limit-hit"
    assert all(fleet.health(s)[0] == "unhealthy" for s in cut)
    assert all(fleet.events(s, "probe") == [] for s in servers), "no SSH storm"
    assert all(repairs(fleet, s) == [] for s in servers), "no repair in a herd"
    assert reboots(fleet) == (0, 0)
    assert {s.id: fleet.ssh_connections(s)[0] for s in servers} == ssh
    assert [b["what"] for b in fleet.receiver.bodies] == ["herd guard tripped"]
    assert all(fleet.owner_messages(s) == [] for s in servers), "owners are not told in a herd"

    # The network heals: the partitioned servers heartbeat again, the share drops, the
    # guard clears by itself and the held repair goes ahead.
    fleet.clear("crash_loop", down)
    assert sorted(fleet.clear("partition")) == sorted(str(fleet.row(s).name) for s in cut)
    fleet.watch(lambda: all(fleet.health(s)[0] == "healthy" for s in servers), "all healthy")
    assert not HerdStore(fleet.stack.redis).read()[0].tripped
    herd = fleet.fleet_events("herd")
    assert [m.split(":")[0] for m in herd] == ["herd guard tripped", "herd guard cleared"]
    assert repairs(fleet, down) == ["restart"]
    assert all(repairs(fleet, s) == [] for s in servers if s is not down)
    assert all(fleet.timeline(s) == ["healthy", "unhealthy", "healthy"] for s in cut)
    assert [b["what"] for b in fleet.receiver.bodies] == ["herd guard tripped"], "alerted once"
    # One SSH restart, and its ask for a heartbeat unless one told first (it is then
    # healthy: no connection to a healthy server).
    opened = {s.id: fleet.ssh_connections(s)[0] - ssh[s.id] for s in servers}
    assert opened.pop(down.id) in (1, 2) and set(opened.values()) == {0}, opened
    assert reboots(fleet) == (0, 0)
