"""`/servers`: create, list, get, update, delete and power actions."""

from __future__ import annotations

import re
import secrets
from typing import Any

from sim import capacity, catalog, images, lifecycle, render
from sim.engine import Simulator
from sim.errors import ApiError, invalid_field, not_found, uniqueness
from sim.http import (
    Request,
    Response,
    bool_field,
    labels_field,
    list_field,
    list_response,
    parse_id,
    ref_field,
    select,
    text_field,
)
from sim.routes import Route
from sim.state import Server

#: Hetzner's limit on user data.
USER_DATA_MAX_BYTES = 32 * 1024
STATUSES = (
    "running", "initializing", "starting", "stopping", "off",
    "deleting", "migrating", "rebuilding", "unknown",
)  # fmt: skip
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$"
)
_SORT = {"id": lambda s: s.id, "name": lambda s: s.name, "created": lambda s: (s.created, s.id)}


def get_server(sim: Simulator, server_id: str) -> Server:
    """The server with this id.

    Raises:
        ApiError: not_found, or invalid_input for a malformed id.
    """
    server = sim.store.servers.get(parse_id(server_id))
    if server is None:
        raise not_found("server", server_id)
    return server


def _valid_name(body: dict[str, Any], sim: Simulator, current: Server | None = None) -> str | None:
    name = text_field(body, "name", required=current is None)
    if name is None:
        return None
    if not _HOSTNAME.match(name):
        raise invalid_field("name", "must be a valid hostname (RFC 1123)")
    existing = sim.store.server_named(name)
    if existing is not None and existing is not current:
        raise uniqueness("name")
    return name


def _placement(sim: Simulator, location: str | None, server_type: dict[str, Any]) -> str:
    """The location asked for (None: Hetzner picks one) if it has room for the type.

    Raises:
        ApiError: a capacity fault's code (spending it).
    """
    type_name = server_type["name"]
    if location is None:
        # Hetzner places it where there is room; none anywhere: the first refusal stands.
        where = [loc["name"] for loc in server_type["locations"]]
        rules = sim.faults.capacity
        room = [loc for loc in where if capacity.refusal(rules, loc, type_name) is None]
        location = room[0] if room else where[0]
    refused = capacity.refusal(sim.faults.capacity, location, type_name)
    if refused is not None:
        if refused.count is not None:
            refused.count -= 1
        raise ApiError(refused.code, capacity.message(refused, location, type_name))
    return location


def _location(body: dict[str, Any], server_type: dict[str, Any]) -> str | None:
    location = text_field(body, "location")
    datacenter = text_field(body, "datacenter")
    if location and datacenter:
        raise invalid_field("location", "give either location or datacenter, not both")
    where = [loc["name"] for loc in server_type["locations"]]
    if datacenter is not None:
        location = datacenter.split("-")[0]
        if (
            catalog.location(location) is None
            or catalog.datacenter_for(location)["name"] != datacenter
        ):
            raise invalid_field("datacenter", f"unknown datacenter {datacenter!r}")
    if location is None:
        return None
    if catalog.location(location) is None:
        raise invalid_field("location", f"unknown location {location!r}")
    if location not in where:
        raise ApiError(
            "resource_unavailable",
            f"server type {server_type['name']} is unavailable in location {location}",
        )
    return location


def _public_keys(sim: Simulator, refs: list[Any]) -> list[str]:
    keys = []
    for raw in refs:
        ref = ref_field(raw, "ssh_keys")
        key = next((k for k in sim.store.ssh_keys.values() if ref in (str(k.id), k.name)), None)
        if key is None:
            raise invalid_field("ssh_keys", f"SSH key {ref!r} not found")
        keys.append(key.public_key)
    return keys


def _firewall_ids(sim: Simulator, entries: list[Any]) -> list[int]:
    ids = []
    for entry in entries:
        fid = entry.get("firewall") if isinstance(entry, dict) else None
        if isinstance(fid, bool) or not isinstance(fid, int) or fid not in sim.store.firewalls:
            raise invalid_field("firewalls", f"firewall {fid!r} not found")
        ids.append(fid)
    return ids


def create_server(sim: Simulator, req: Request) -> Response:
    """POST /servers."""
    body = req.json()
    server_type = catalog.server_type(ref_field(body.get("server_type"), "server_type"))
    if server_type is None:
        raise invalid_field("server_type", "server type not found")
    image, disk = images.resolve(sim, ref_field(body.get("image"), "image"), server_type)
    asked = _location(body, server_type)
    user_data = text_field(body, "user_data")
    if user_data is not None and len(user_data.encode()) > USER_DATA_MAX_BYTES:
        raise invalid_field("user_data", f"must be at most {USER_DATA_MAX_BYTES} bytes")
    for unsupported in ("networks", "volumes"):
        if list_field(body, unsupported):
            raise invalid_field(unsupported, "not supported by the simulator")
    if body.get("placement_group") is not None:
        raise invalid_field("placement_group", "not supported by the simulator")
    public_net = body.get("public_net") or {}
    if not isinstance(public_net, dict):
        raise invalid_field("public_net", "must be an object")
    keys = _public_keys(sim, list_field(body, "ssh_keys"))
    fields = {
        "server_type": server_type,
        "image": image,
        "labels": labels_field(body) or {},
        "user_data": user_data,
        "public_keys": keys,
        "enable_ipv4": bool_field(public_net, "enable_ipv4", True),
        "enable_ipv6": bool_field(public_net, "enable_ipv6", True),
        "firewall_ids": _firewall_ids(sim, list_field(body, "firewalls")),
        "disk": disk,
        # Without SSH keys Hetzner mails nothing and returns a root password.
        "root_password": None if keys else secrets.token_urlsafe(15),
    }
    start = bool_field(body, "start_after_create", True)
    # The name is checked last so a retried POST fails on it alone.
    fields["name"] = _valid_name(body, sim)
    # Placement last, as Hetzner places a server it has accepted: a refusal is about room.
    fields["location"] = _placement(sim, asked, server_type)
    server, action, next_actions = lifecycle.create_server(sim, fields, start)
    return Response(
        201,
        {
            "server": render.server(sim.store, server),
            "action": render.action(action),
            "next_actions": [render.action(a) for a in next_actions],
            "root_password": server.root_password,
        },
    )


def list_servers(sim: Simulator, req: Request) -> Response:
    """GET /servers."""
    servers = sorted(sim.store.servers.values(), key=lambda s: s.id)
    name = req.arg("name")
    if name is not None:
        servers = [s for s in servers if s.name == name]
    statuses = req.args("status")
    for status in statuses:
        if status not in STATUSES:
            raise invalid_field("status", f"unknown status {status!r}")
    if statuses:
        servers = [s for s in servers if s.status in statuses]
    servers = select(req, servers, lambda s: s.labels)
    return list_response(req, "servers", servers, lambda s: render.server(sim.store, s), _SORT)


def show_server(sim: Simulator, req: Request, id: str) -> Response:
    """GET /servers/{id}."""
    return Response(200, {"server": render.server(sim.store, get_server(sim, id))})


def update_server(sim: Simulator, req: Request, id: str) -> Response:
    """PUT /servers/{id}: name and labels."""
    server = get_server(sim, id)
    body = req.json()
    name = _valid_name(body, sim, current=server)
    labels = labels_field(body)
    if name is not None:
        server.name = name
    if labels is not None:
        server.labels = labels
    return Response(200, {"server": render.server(sim.store, server)})


def _unlocked(server: Server) -> Server:
    if server.imaging is not None:
        raise ApiError(
            "locked", f"server {server.id} is locked: image {server.imaging} is being made"
        )
    return server


def delete_server(sim: Simulator, req: Request, id: str) -> Response:
    """DELETE /servers/{id}."""
    server = _unlocked(get_server(sim, id))
    if server.status == "deleting":
        # A repeated delete (an SDK retry) gets the running delete action back.
        running = [
            a
            for a in sim.store.actions_for("server", server.id)
            if a.command == "delete_server" and a.status == "running"
        ]
        if running:
            return Response(200, {"action": render.action(running[-1])})
    return Response(200, {"action": render.action(lifecycle.delete_server(sim, server))})


def _power(command: str) -> Any:
    def handler(sim: Simulator, req: Request, id: str) -> Response:
        server = _unlocked(get_server(sim, id))
        if req.body.strip():
            req.json()  # the body is optional, but must be JSON when given
        if server.status in ("initializing", "deleting"):
            raise ApiError("locked", f"server {server.id} is locked by another action")
        return Response(
            201, {"action": render.action(lifecycle.power_action(sim, server, command))}
        )

    handler.__doc__ = f"POST /servers/{{id}}/actions/{command}."
    return handler


ROUTES = [
    Route("POST", "/servers", "create_server", create_server),
    Route("GET", "/servers", "list_servers", list_servers),
    Route("GET", "/servers/{id}", "get_server", show_server),
    Route("PUT", "/servers/{id}", "replace_server", update_server),
    Route("DELETE", "/servers/{id}", "delete_server", delete_server),
    Route("POST", "/servers/{id}/actions/poweron", "power_on_server", _power("start_server")),
    Route("POST", "/servers/{id}/actions/poweroff", "power_off_server", _power("stop_server")),
    Route("POST", "/servers/{id}/actions/shutdown", "shutdown_server", _power("shutdown_server")),
    Route("POST", "/servers/{id}/actions/reboot", "soft_reboot_server", _power("reboot_server")),
    Route("POST", "/servers/{id}/actions/reset", "reset_server", _power("reset_server")),
]
