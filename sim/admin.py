"""`/_sim/...`: the simulator's own admin API (not part of Hetzner's).

Same bearer token as the API; never rate limited, never fault-injected.

Faults of running VPSs (`sim.faults`, "Faults of running VPSs"):

- `POST /_sim/vps/faults` `{"fault": NAME, "servers": ["<server name>", ...]}`
  or `{"fault": NAME, "share": 0.33, "seed": 7}` (a random share of the
  running servers, rounded to the nearest count; `seed` optional, else the
  simulator's dice) -> 200 `{"applied": ["<name>", ...]}`;
- `DELETE /_sim/vps/faults` `{"fault": NAME|null, "servers": [...]|null}`
  (null or absent: every fault, every VPS; an empty body clears all) -> 200
  `{"cleared": ["<name>", ...]}`;
- `GET /_sim/vps/faults` -> 200 `{"faults": {"<name>": ["freeze", ...]}}`.

An unknown fault, server or field, or a body that is not a JSON object,
answers 400 `{"error": {"code": "invalid_input", "message": ...}}`.
"""

from __future__ import annotations

from typing import Any

import msgspec

from core.cloud.vps_contract import INSTALL_STEPS
from sim import faults as faults_module
from sim import fleet_faults
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


class BadInput(ApiError):
    """Bad input to the admin API's VPS faults: 400, with Hetzner's error body."""

    def __init__(self, message: str) -> None:
        super().__init__("invalid_input", message)
        self.status = 400


def _fault_request(req: Request, *, clearing: bool) -> faults_module.FaultRequest:
    if clearing and not req.body.strip():
        return faults_module.FaultRequest(None)
    try:
        return faults_module.parse_fault_request(req.json(), clearing=clearing)
    except ApiError as exc:
        raise BadInput(exc.message) from None
    except faults_module.FaultError as exc:
        raise BadInput(str(exc)) from None


async def post_vps_faults(sim: Simulator, req: Request) -> Response:
    """POST /_sim/vps/faults: aim a fault at running VPSs."""
    request = _fault_request(req, clearing=False)
    try:
        applied = await fleet_faults.apply(sim, request)
    except faults_module.FaultError as exc:
        raise BadInput(str(exc)) from None
    return Response(200, {"applied": applied})


async def delete_vps_faults(sim: Simulator, req: Request) -> Response:
    """DELETE /_sim/vps/faults: clear faults of VPSs."""
    request = _fault_request(req, clearing=True)
    try:
        cleared = await fleet_faults.clear(sim, request)
    except faults_module.FaultError as exc:
        raise BadInput(str(exc)) from None
    return Response(200, {"cleared": cleared})


def get_vps_faults(sim: Simulator, req: Request) -> Response:
    """GET /_sim/vps/faults: the faults of every VPS that has one."""
    return Response(200, {"faults": fleet_faults.active(sim)})


ROUTES = [
    Route("GET", "/faults", "sim_get_faults", get_faults),
    Route("PUT", "/faults", "sim_put_faults", put_faults),
    Route("DELETE", "/faults", "sim_clear_faults", clear_faults),
    Route("PUT", "/servers/{id}/faults", "sim_put_server_faults", put_server_faults),
    Route("GET", "/stats", "sim_stats", get_stats),
    Route("GET", "/vps", "sim_vps", list_vps),
    Route("GET", "/vps/faults", "sim_get_vps_faults", get_vps_faults),
    Route("POST", "/vps/faults", "sim_post_vps_faults", post_vps_faults),
    Route("DELETE", "/vps/faults", "sim_delete_vps_faults", delete_vps_faults),
    Route("POST", "/reset", "sim_reset", reset),
]
