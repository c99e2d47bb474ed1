"""`/server_types`, `/locations`: the read-only catalog (images: `sim.api_images`)."""

from __future__ import annotations

from typing import Any

from sim import capacity, catalog
from sim.engine import Simulator
from sim.errors import not_found
from sim.http import Request, Response, list_response, parse_id
from sim.routes import Route

_Row = dict[str, Any]
_BY_ID_NAME = {"id": lambda r: r["id"], "name": lambda r: r["name"]}


def _by_name(req: Request, rows: list[_Row]) -> list[_Row]:
    name = req.arg("name")
    return rows if name is None else [r for r in rows if r["name"] == name]


def _one(rows: list[_Row], raw_id: str, kind: str) -> _Row:
    wanted = parse_id(raw_id)
    row = next((r for r in rows if r["id"] == wanted), None)
    if row is None:
        raise not_found(kind, raw_id)
    return row


def _server_types(sim: Simulator) -> list[_Row]:
    # Where a capacity fault is advertised, the type is not available there.
    return catalog.server_types(capacity.availability(sim.faults.capacity))


def list_server_types(sim: Simulator, req: Request) -> Response:
    """GET /server_types."""
    return list_response(req, "server_types", _by_name(req, _server_types(sim)), dict)


def show_server_type(sim: Simulator, req: Request, id: str) -> Response:
    """GET /server_types/{id}."""
    return Response(200, {"server_type": _one(_server_types(sim), id, "server_type")})


def list_locations(sim: Simulator, req: Request) -> Response:
    """GET /locations."""
    return list_response(req, "locations", _by_name(req, catalog.locations()), dict, _BY_ID_NAME)


def show_location(sim: Simulator, req: Request, id: str) -> Response:
    """GET /locations/{id}."""
    return Response(200, {"location": _one(catalog.locations(), id, "location")})


ROUTES = [
    Route("GET", "/server_types", "list_server_types", list_server_types),
    Route("GET", "/server_types/{id}", "get_server_type", show_server_type),
    Route("GET", "/locations", "list_locations", list_locations),
    Route("GET", "/locations/{id}", "get_location", show_location),
]
