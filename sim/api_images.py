"""`/images` (the system images and the project's snapshots) and `create_image`.

- `GET /images`: filters `type`, `status`, `architecture`, `name` (system
  images only have one), `bound_to` (backups only), `label_selector`,
  `include_deprecated`; sorting by id, name, created; pagination.
- `GET`, `PUT` (description, labels, `type: snapshot`), `DELETE /images/{id}`:
  system images can be neither changed nor deleted (403 `forbidden`).
- `POST /servers/{id}/actions/create_image` (`type` snapshot|backup,
  `description`, `labels`): 201 with the image `creating` and the action
  (`sim.images`).
"""

from __future__ import annotations

from typing import Any

from sim import images, render
from sim.api_servers import get_server
from sim.engine import Simulator
from sim.errors import ApiError, invalid_field, not_found
from sim.http import (
    Request,
    Response,
    labels_field,
    list_response,
    parse_id,
    select,
    text_field,
)
from sim.routes import Route
from sim.state import Image

_Row = dict[str, Any]
TYPES = ("system", "app", "snapshot", "backup")
STATUSES = ("available", "creating", "unavailable")
ARCHITECTURES = ("x86", "arm")
_SORT = {
    "id": lambda r: r["id"],
    # Snapshots have no name: they sort as the empty name, before every system image.
    "name": lambda r: r["name"] or "",
    "created": lambda r: (r["created"], r["id"]),
}


def _checked(req: Request, name: str, allowed: tuple[str, ...]) -> list[str]:
    values = req.args(name)
    for value in values:
        if value not in allowed:
            raise invalid_field(name, f"must be one of {', '.join(allowed)}, got {value!r}")
    return values


def list_images(sim: Simulator, req: Request) -> Response:
    """GET /images."""
    rows = images.every_image(sim)
    filters = (
        ("type", _checked(req, "type", TYPES)),
        ("status", _checked(req, "status", STATUSES)),
        ("architecture", _checked(req, "architecture", ARCHITECTURES)),
    )
    for key, wanted in filters:
        if wanted:
            rows = [r for r in rows if r[key] in wanted]
    name = req.arg("name")
    if name is not None:
        rows = [r for r in rows if r["name"] == name]
    bound_to = req.args("bound_to")
    if bound_to:
        ids = {parse_id(b, "bound_to") for b in bound_to}
        rows = [r for r in rows if r["bound_to"] in ids]
    include = req.arg("include_deprecated")
    if include is not None and include not in ("true", "false"):
        raise invalid_field("include_deprecated", "must be true or false")
    rows = select(req, rows, lambda r: r["labels"])
    return list_response(req, "images", rows, dict, _SORT)


def _row(sim: Simulator, raw_id: str) -> _Row:
    wanted = parse_id(raw_id)
    row = next((r for r in images.every_image(sim) if r["id"] == wanted), None)
    if row is None:
        raise not_found("image", raw_id)
    return row


def _snapshot(sim: Simulator, raw_id: str, verb: str) -> Image:
    row = _row(sim, raw_id)
    if row["type"] == "system":
        raise ApiError("forbidden", f"image {row['id']} is a system image: it cannot be {verb}")
    return sim.store.images[row["id"]]


def show_image(sim: Simulator, req: Request, id: str) -> Response:
    """GET /images/{id}."""
    return Response(200, {"image": _row(sim, id)})


def update_image(sim: Simulator, req: Request, id: str) -> Response:
    """PUT /images/{id}: description, labels, or `type: snapshot` (a backup's conversion)."""
    image = _snapshot(sim, id, "changed")
    body = req.json()
    description = text_field(body, "description")
    labels = labels_field(body)
    kind = text_field(body, "type")
    if kind is not None and kind != "snapshot":
        raise invalid_field("type", "an image can only be converted to a snapshot")
    if description is not None:
        image.description = description
    if labels is not None:
        image.labels = labels
    if kind is not None:
        image.type = kind
    return Response(200, {"image": render.image(image)})


def delete_image(sim: Simulator, req: Request, id: str) -> Response:
    """DELETE /images/{id}: 204; a snapshot's disk goes with it."""
    images.delete(sim, _snapshot(sim, id, "deleted"))
    return Response(204)


def create_image(sim: Simulator, req: Request, id: str) -> Response:
    """POST /servers/{id}/actions/create_image."""
    server = get_server(sim, id)
    body = req.json() if req.body.strip() else {}
    kind = text_field(body, "type") or "snapshot"
    if kind not in ("snapshot", "backup"):
        raise invalid_field("type", f"must be snapshot or backup, got {kind!r}")
    description = text_field(body, "description")
    labels = labels_field(body) or {}
    image, action = images.start(sim, server, kind, description, labels)
    return Response(201, {"image": render.image(image), "action": render.action(action)})


ROUTES = [
    Route("GET", "/images", "list_images", list_images),
    Route("GET", "/images/{id}", "get_image", show_image),
    Route("PUT", "/images/{id}", "replace_image", update_image),
    Route("DELETE", "/images/{id}", "delete_image", delete_image),
    Route("POST", "/servers/{id}/actions/create_image", "create_image_from_server", create_image),
]
