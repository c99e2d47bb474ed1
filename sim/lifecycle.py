"""The asynchronous lifecycle of a simulated server: create, boot, delete, power.

Creating a server records it and starts its lifecycle on the simulator's loop:
create -> running -> SSH -> cloud-init callback, each step after its simulated
time (`SimConfig.time_scale` real seconds each): create, boot, cloud-init's
per-server part, and the install's work when cloud-init runs it (the stock
install's time, times the share of its work not on the disk yet: all of it on
a stock image, none on a snapshot of an installed server;
`sim.install.pending_work`). Deleting a server and its power actions (start,
stop, shutdown, reboot, reset) are actions that finish the same way. The fault
dice (`Simulator.action_fails`) may fail any of them; a server's own faults
(`never_running`, `ssh_refuse`, `no_callback`, `install_fail`) stop it short.

Apart from `sim.engine` (the simulator's state, its loop and tasks, faults and
rate limit, the making of VPSs), whose `Simulator` every function here takes.
The API (`sim.api_servers`) calls these on the loop, under the lock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from sim.faults import decide_server_faults
from sim.state import Action, Server
from sim.stats import ServerTimings

if TYPE_CHECKING:
    from sim.engine import Simulator
    from sim.vps import Vps

log = logging.getLogger(__name__)

_POWERING_OFF = ("stop_server", "shutdown_server")


def create_server(
    sim: Simulator, fields: dict[str, Any], start: bool
) -> tuple[Server, Action, list[Action]]:
    """Record a new server and start its lifecycle; call on the loop, under the lock."""
    store = sim.store
    server = Server(
        id=store.next_server_id(),
        name=fields["name"],
        server_type=fields["server_type"],
        image=fields["image"],
        location=fields["location"],
        labels=fields["labels"],
        user_data=fields["user_data"],
        public_keys=fields["public_keys"],
        ipv4=sim.addresses.next_ipv4() if fields["enable_ipv4"] else None,
        ipv6=sim.addresses.next_ipv6() if fields["enable_ipv6"] else None,
        ipv4_id=store.next_ip_id(),
        ipv6_id=store.next_ip_id(),
        faults=decide_server_faults(sim.faults, fields["name"], sim.rng),
        firewall_ids=fields["firewall_ids"],
        root_password=fields["root_password"],
        disk=fields.get("disk"),
    )
    store.servers[server.id] = server
    for firewall_id in server.firewall_ids:
        store.firewalls[firewall_id].servers.append(server.id)
    action = store.new_action("create_server", "servers", [("server", server.id)])
    next_actions = (
        [store.new_action("start_server", "servers", [("server", server.id)])] if start else []
    )
    sim.stats.servers[server.id] = ServerTimings(server.name, image=server.image["type"])
    sim.spawn_task(server.id, _provision(sim, server, action, next_actions, time.monotonic()))
    return server, action, next_actions


async def _provision(
    sim: Simulator, server: Server, action: Action, next_actions: list[Action], started: float
) -> None:
    await sim.sleep(sim.config.create_seconds, sim.faults.action_delay)
    if server.faults.never_running:
        return  # the action stays running and the server initializing, forever
    if sim.action_fails("create_server"):
        _fail_create(sim, server, [action, *next_actions], "(simulated fault)")
        return
    vps = None
    if next_actions:
        try:
            vps = await sim.make_vps(server)
        except OSError as exc:
            log.error(
                "server %s: its VPS could not be made (%s); the create action fails",
                server.id,
                exc,
            )
            _fail_create(sim, server, [action, *next_actions], f"(the simulator: {exc})")
            return
    with sim.lock:
        action.succeed()
        for follow_up in next_actions:
            follow_up.succeed()
        server.status = "running" if vps else "off"
        sim.stats.servers[server.id].create = time.monotonic() - started
    if vps is not None:
        await _boot(sim, server, vps, first_boot=True)


def _fail_create(sim: Simulator, server: Server, actions: list[Action], why: str) -> None:
    with sim.lock:
        for action in actions:
            action.fail("action_failed", f"server creation failed {why}")
        server.status = "off"


async def _boot(sim: Simulator, server: Server, vps: Vps, first_boot: bool) -> None:
    booted = time.monotonic()
    await sim.sleep(sim.config.boot_seconds)
    if (not first_boot and not vps.systemd.powered) or (first_boot and vps.from_image):
        vps.boot()  # an image's enabled units start at its first boot too
    if not server.faults.ssh_refuse and server.ipv4:
        await vps.start_ssh()
    timings = sim.stats.servers[server.id]
    timings.boot = time.monotonic() - booted
    if not first_boot:
        return
    cloud_init_started = time.monotonic()
    await sim.sleep(sim.config.cloud_init_seconds)
    vps.install_fail = server.faults.install_fail  # as set now, per server too
    # The install's work takes its time first; its files land at the end of it.
    timings.install = sim.config.install_seconds * vps.install_work()
    await sim.sleep(timings.install)
    await asyncio.to_thread(vps.run_cloud_init)
    vps.cloud_init_done = True
    if server.faults.no_callback:
        return
    ok = await vps.run_callback(sim.config.callback)
    timings.callback_attempts = vps.callback.attempts
    timings.callback = vps.callback.request_seconds
    if ok:
        timings.cloud_init = time.monotonic() - cloud_init_started


def delete_server(sim: Simulator, server: Server) -> Action:
    """Start deleting a server; call on the loop, under the lock."""
    action = sim.store.new_action("delete_server", "servers", [("server", server.id)])
    previous = server.status
    server.status = "deleting"
    # Deleting stops whatever the box was doing, the callback retries included.
    sim.cancel_tasks(server.id)
    sim.spawn_task(server.id, _delete(sim, server, action, previous))
    return action


async def _delete(sim: Simulator, server: Server, action: Action, previous: str) -> None:
    await sim.sleep(sim.config.boot_seconds, sim.faults.action_delay)
    with sim.lock:
        vps = sim.vpss.pop(server.id, None)
    if sim.action_fails("delete_server"):
        if vps is not None:
            await vps.stop_ssh()
            with sim.lock:
                sim.vpss[server.id] = vps
        with sim.lock:
            action.fail("action_failed", "server deletion failed (simulated fault)")
            server.status = "off" if previous != "initializing" else previous
        return
    if vps is not None:
        await vps.destroy()
    with sim.lock:
        action.succeed()
        sim.store.servers.pop(server.id, None)
        for firewall in sim.store.firewalls.values():
            if server.id in firewall.servers:
                firewall.servers.remove(server.id)
        if server.id in sim.stats.servers:
            sim.stats.servers[server.id].deleted = True


def power_action(sim: Simulator, server: Server, command: str) -> Action:
    """Start a power action (`start_server`, `stop_server`, `shutdown_server`,
    `reboot_server`, `reset_server`); call on the loop, under the lock."""
    action = sim.store.new_action(command, "servers", [("server", server.id)])
    sim.spawn_task(server.id, _power(sim, server, action, command))
    return action


async def _power(sim: Simulator, server: Server, action: Action, command: str) -> None:
    # reboot and reset restart the box: down now, up again after the boot time.
    vps = sim.vpss.get(server.id)
    if command != "start_server" and vps is not None:
        await vps.power_off()
    if command in _POWERING_OFF:
        with sim.lock:
            server.status = "stopping"
    await sim.sleep(sim.config.boot_seconds, sim.faults.action_delay)
    if sim.action_fails(command):
        with sim.lock:
            action.fail("action_failed", f"{command} failed (simulated fault)")
        return
    with sim.lock:
        action.succeed()
        server.status = "off" if command in _POWERING_OFF else "running"
    if server.status == "running":
        first_boot = vps is None
        if vps is None:
            vps = await sim.make_vps(server)
        await _boot(sim, server, vps, first_boot=first_boot)
