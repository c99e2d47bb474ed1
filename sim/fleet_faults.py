"""Faults of running VPSs across the fleet, and Telegram's changes reaching their bots.

The engine side of `POST`/`DELETE /_sim/vps/faults` (`sim.admin`): which
VPSs a request names (Hetzner server names, or a seeded random share of the
running servers), and each VPS taking the fault (`Vps.set_fault`). And the
`sim.telegram.BotWatcher` of the simulator: when Telegram changes for a bot
(a token revoked, a webhook set, another poller), the Rachel8 processes
polling as that bot hear of it (`sim.rachel8_telegram.rachel8_event`).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from core.cloud.vps_contract import SERVICE_UNIT
from sim.faults import VPS_FAULTS, FaultError, FaultRequest, pick_share
from sim.rachel8_telegram import rachel8_event
from sim.telegram import BotEvent

if TYPE_CHECKING:
    from sim.engine import Simulator
    from sim.vps import Vps


def _by_name(sim: Simulator, *, running: bool) -> dict[str, Vps]:
    """Server name -> its VPS (only servers `running`, when asked)."""
    with sim.lock:
        found = {}
        for server_id, vps in sim.vpss.items():
            server = sim.store.servers.get(server_id)
            if server is not None and (not running or server.status == "running"):
                found[server.name] = vps
        return found


def _named(vpss: dict[str, Vps], names: list[str], what: str) -> list[str]:
    unknown = [name for name in names if name not in vpss]
    if unknown:
        raise FaultError(f"servers: no {what} server named {unknown[0]!r}")
    return sorted(set(names))


async def apply(sim: Simulator, request: FaultRequest) -> list[str]:
    """Aim `request.fault` at the VPSs it names; the names of those hit.

    Raises:
        FaultError: a name that is no running server's.
    """
    assert request.fault is not None
    running = _by_name(sim, running=True)
    if request.servers is not None:
        names = _named(running, request.servers, "running")
    else:
        rng = random.Random(request.seed) if request.seed is not None else sim.rng  # noqa: S311
        names = pick_share(list(running), request.share or 0.0, rng)
    for name in names:
        await running[name].set_fault(request.fault, True)
    return names


async def clear(sim: Simulator, request: FaultRequest) -> list[str]:
    """Clear a fault (None: every one) of the VPSs named (None: all); the names cleared.

    Raises:
        FaultError: a name that is no server's.
    """
    vpss = _by_name(sim, running=False)
    names = sorted(vpss) if request.servers is None else _named(vpss, request.servers, "simulated")
    wanted = [request.fault] if request.fault else list(VPS_FAULTS)
    cleared = []
    for name in names:
        hit = [fault for fault in wanted if fault in vpss[name].faults.active()]
        for fault in hit:
            await vpss[name].set_fault(fault, False)
        if hit:
            cleared.append(name)
    return cleared


def active(sim: Simulator) -> dict[str, list[str]]:
    """Server name -> the faults aimed at its VPS (servers with none left out)."""
    return {
        name: vps.faults.active()
        for name, vps in sorted(_by_name(sim, running=False).items())
        if vps.faults.active()
    }


class FleetWatcher:
    """The simulator's `BotWatcher`: Telegram's changes reach the Rachel8s polling that bot."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def _polling(self, bot_id: int) -> list[Vps]:
        with self.sim.lock:
            vpss = list(self.sim.vpss.values())
        return [vps for vps in vpss if vps.outside.bot_id == bot_id]

    def settle(self, bot_id: int) -> None:
        """Replay each such Rachel8 up to now, before Telegram changes."""
        for vps in self._polling(bot_id):
            vps.systemd.active_state(SERVICE_UNIT)

    def changed(self, event: BotEvent) -> None:
        """Each such Rachel8 reacts (its long poll ends; it exits 1)."""
        for vps in self._polling(event.bot_id):
            rachel8_event(vps.systemd, event)
