"""What `/_sim/vps` shows of a simulated VPS: its address, users, install, units, callback."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from core.cloud import vps_contract

if TYPE_CHECKING:
    from sim.vps import Vps

#: Journal lines of the Rachel8 unit `/_sim/vps` shows.
JOURNAL_TAIL = 20


def describe(vps: Vps) -> dict[str, Any]:
    """A JSON-ready summary of `vps`."""
    return {
        "server_id": vps.server_id,
        "name": vps.name,
        "ip": vps.ip,
        "ssh_port": vps.ssh_port,
        "root_dir": str(vps.root),
        "ssh_listening": vps.ssh_listening,
        "ssh_connections": vps.ssh_connections,
        "host_key": vps.host_public_key,
        "authorized_users": sorted(vps.authorized),
        "cloud_init_done": vps.cloud_init_done,
        "from_image": vps.from_image,
        "powered": vps.systemd.powered,
        "uptime_seconds": round(vps.systemd.uptime(), 3),
        "faults": vps.faults.active(),
        "units": vps.systemd.states,
        "users": [
            {
                "name": a.name,
                "uid": a.uid,
                "gid": a.gid,
                "home": a.home,
                "shell": a.shell,
                "sudo": a.has_sudo,
            }
            for a in vps.fs.accounts.all()
        ],
        "packages": list(vps.packages),
        "install": vps.install_result,
        "rachel8": _rachel8_state(vps),
        "cloud_config_errors": list(vps.cloud_config_errors),
        "agent": dataclasses.asdict(vps.agent_record),
        "callback": {
            "url": vps.callback.url,
            "attempts": vps.callback.attempts,
            "last_status": vps.callback.last_status,
            "last_error": vps.callback.last_error,
            "succeeded": vps.callback.succeeded,
        },
    }


def _rachel8_state(vps: Vps) -> dict[str, Any] | None:
    systemd = vps.systemd
    unit = vps_contract.SERVICE_UNIT
    if unit not in systemd.services:
        return {"loaded": False, "enabled": unit in systemd.enabled}
    props = systemd.properties(unit)
    state: dict[str, Any] = {key: props[key] for key in vps_contract.SERVICE_PROPERTIES}
    state |= {"loaded": True, "enabled": unit in systemd.enabled}
    state["journal_tail"] = systemd.journal(unit, JOURNAL_TAIL)
    return state
