"""`/server_types`, `/locations`, `/images`: the read-only catalog."""

from __future__ import annotations

from typing import Any

from sim import catalog
from sim.engine import Simulator
from sim.errors import invalid_field, not_found
from sim.http import Request, Response, list_response, parse_id, select
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


def list_server_types(sim: Simulator, req: Request) -> Response:
    """GET /server_types."""
    return list_response(req, "server_types", _by_name(req, catalog.server_types()), dict)


def show_server_type(sim: Simulator, req: Request, id: str) -> Response:
    """GET /server_types/{id}."""
    return Response(200, {"server_type": _one(catalog.server_types(), id, "server_type")})


def list_locations(sim: Simulator, req: Request) -> Response:
    """GET /locations."""
    return list_response(req, "locations", _by_name(req, catalog.locations()), dict, _BY_ID_NAME)


def show_location(sim: Simulator, req: Request, id: str) -> Response:
    """GET /locations/{id}."""
    return Response(200, {"location": _one(catalog.locations(), id, "location")})


def list_images(sim: Simulator, req: Request) -> Response:
    """GET /images, with the filters the SDK sends."""
    images = _by_name(req, catalog.images())
    architectures = req.args("architecture")
    for arch in architectures:
        if arch not in ("x86", "arm"):
            raise invalid_field("architecture", "must be x86 or arm")
    if architectures:
        images = [i for i in images if i["architecture"] in architectures]
    types = req.args("type")
    if types:
        images = [i for i in images if i["type"] in types]
    statuses = req.args("status")
    if statuses:
        images = [i for i in images if i["status"] in statuses]
    images = select(req, images, lambda i: i["labels"])
    sorts = {**_BY_ID_NAME, "created": lambda r: (r["created"], r["id"])}
    return list_response(req, "images", images, dict, sorts)


def show_image(sim: Simulator, req: Request, id: str) -> Response:
    """GET /images/{id}."""
    return Response(200, {"image": _one(catalog.images(), id, "image")})


ROUTES = [
    Route("GET", "/server_types", "list_server_types", list_server_types),
    Route("GET", "/server_types/{id}", "get_server_type", show_server_type),
    Route("GET", "/locations", "list_locations", list_locations),
    Route("GET", "/locations/{id}", "get_location", show_location),
    Route("GET", "/images", "list_images", list_images),
    Route("GET", "/images/{id}", "get_image", show_image),
]
