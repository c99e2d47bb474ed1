"""`/_sim/...`: the simulator's own admin API (not part of Hetzner's).

Same bearer token as the API; never rate limited, never fault-injected.
"""

from __future__ import annotations

from typing import Any

import msgspec

from core.cloud.vps_contract import INSTALL_STEPS
from sim import faults as faults_module
from sim.api_servers import get_server
from sim.engine import Simulator
from sim.errors import ApiError
from sim.http import Request, Response
from sim.routes import Route


def get_faults(sim: Simulator, req: Request) -> Response:
    """GET /_sim/faults."""
    return Response(200, {"faults": faults_module.to_dict(sim.faults)})


def put_faults(sim: Simulator, req: Request) -> Response:
    """PUT /_sim/faults: replace the active faults."""
    try:
        new = faults_module.parse_faults(req.body)
    except faults_module.FaultError as exc:
        raise ApiError("invalid_input", str(exc)) from None
    sim.set_faults(new)
    return Response(200, {"faults": faults_module.to_dict(sim.faults)})


def clear_faults(sim: Simulator, req: Request) -> Response:
    """DELETE /_sim/faults: no faults at all."""
    sim.set_faults(faults_module.Faults())
    return Response(200, {"faults": faults_module.to_dict(sim.faults)})


def put_server_faults(sim: Simulator, req: Request, id: str) -> Response:
    """PUT /_sim/servers/{id}/faults: per-server faults of an existing server.

    `never_running`, `no_callback`, `ssh_refuse` are booleans; `install_fail`
    names the install step to fail (or null), effective if the install has
    not run yet.
    """
    server = get_server(sim, id)
    try:
        update = msgspec.convert(req.json(), dict[str, bool | str | None])
    except msgspec.ValidationError as exc:
        raise ApiError("invalid_input", str(exc)) from None
    for name, value in update.items():
        if name == "install_fail":
            if value is not None and value not in INSTALL_STEPS:
                raise ApiError("invalid_input", f"install_fail: unknown install step {value!r}")
        elif name not in ("never_running", "no_callback", "ssh_refuse"):
            raise ApiError("invalid_input", f"unknown server fault {name!r}")
        elif not isinstance(value, bool):
            raise ApiError("invalid_input", f"{name} must be true or false")
        setattr(server.faults, name, value)
    return Response(200, {"server_id": server.id, "faults": msgspec.to_builtins(server.faults)})


def get_stats(sim: Simulator, req: Request) -> Response:
    """GET /_sim/stats: API calls per operation and per-server timings."""
    return Response(200, sim.stats.as_dict())


def list_vps(sim: Simulator, req: Request) -> Response:
    """GET /_sim/vps: every booted VPS, its address, root directory and state."""
    vpss: list[dict[str, Any]] = [v.describe() for v in sim.vpss.values()]
    return Response(200, {"vps": vpss})


async def reset(sim: Simulator, req: Request) -> Response:
    """POST /_sim/reset: an empty project again."""
    await sim.reset()
    return Response(200, {"reset": True})


ROUTES = [
    Route("GET", "/faults", "sim_get_faults", get_faults),
    Route("PUT", "/faults", "sim_put_faults", put_faults),
    Route("DELETE", "/faults", "sim_clear_faults", clear_faults),
    Route("PUT", "/servers/{id}/faults", "sim_put_server_faults", put_server_faults),
    Route("GET", "/stats", "sim_stats", get_stats),
    Route("GET", "/vps", "sim_vps", list_vps),
    Route("POST", "/reset", "sim_reset", reset),
]
