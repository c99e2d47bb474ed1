"""Actions: `/actions` and the per-resource action endpoints."""

from __future__ import annotations

from typing import Any

from sim import render
from sim.api_servers import get_server
from sim.engine import Simulator
from sim.errors import ApiError, invalid_field, not_found
from sim.http import Request, Response, list_response, parse_id
from sim.routes import Route
from sim.state import Action

_SORT: dict[str, Any] = {
    "id": lambda a: a.id,
    "command": lambda a: a.command,
    "status": lambda a: a.status,
    "started": lambda a: (a.started, a.id),
    "finished": lambda a: (a.finished or "", a.id),
}
_STATUSES = ("running", "success", "error")


def _filter(req: Request, actions: list[Action]) -> list[Action]:
    statuses = req.args("status")
    for status in statuses:
        if status not in _STATUSES:
            raise invalid_field("status", f"unknown action status {status!r}")
    if statuses:
        actions = [a for a in actions if a.status in statuses]
    ids = req.args("id")
    if ids:
        wanted = {parse_id(i) for i in ids}
        actions = [a for a in actions if a.id in wanted]
    return sorted(actions, key=lambda a: a.id)


def _action(sim: Simulator, raw_id: str, scope: str | None = None) -> Action:
    action = sim.store.actions.get(parse_id(raw_id))
    if action is None or (scope is not None and action.scope != scope):
        raise not_found("action", raw_id)
    return action


def get_multiple_actions(sim: Simulator, req: Request) -> Response:
    """GET /actions?id=...: the `id` parameter is required (the unfiltered list is gone)."""
    if not req.args("id"):
        raise ApiError(
            "invalid_input",
            "the id query parameter is required",
            {"fields": [{"name": "id", "messages": ["is required"]}]},
        )
    actions = _filter(req, list(sim.store.actions.values()))
    return Response(200, {"actions": [render.action(a) for a in actions]})


def get_action(sim: Simulator, req: Request, id: str) -> Response:
    """GET /actions/{id}."""
    return Response(200, {"action": render.action(_action(sim, id))})


def _scoped(scope: str) -> tuple[Any, Any]:
    def list_scope(sim: Simulator, req: Request) -> Response:
        actions = [a for a in sim.store.actions.values() if a.scope == scope]
        return list_response(req, "actions", _filter(req, actions), render.action, _SORT)

    def get_scope(sim: Simulator, req: Request, id: str) -> Response:
        return Response(200, {"action": render.action(_action(sim, id, scope))})

    return list_scope, get_scope


def _for_resource(rtype: str) -> tuple[Any, Any]:
    def owner(sim: Simulator, raw_id: str) -> int:
        if rtype == "server":
            return get_server(sim, raw_id).id
        firewall_id = parse_id(raw_id)
        if firewall_id not in sim.store.firewalls:
            raise not_found(rtype, raw_id)
        return firewall_id

    def list_for(sim: Simulator, req: Request, id: str) -> Response:
        actions = sim.store.actions_for(rtype, owner(sim, id))
        return list_response(req, "actions", _filter(req, actions), render.action, _SORT)

    def get_for(sim: Simulator, req: Request, id: str, action_id: str) -> Response:
        resource_id = owner(sim, id)
        action = _action(sim, action_id)
        if not any(r["type"] == rtype and r["id"] == resource_id for r in action.resources):
            raise not_found("action", action_id)
        return Response(200, {"action": render.action(action)})

    return list_for, get_for


_servers_list, _servers_get = _scoped("servers")
_firewalls_list, _firewalls_get = _scoped("firewalls")
_server_list, _server_get = _for_resource("server")
_firewall_list, _firewall_get = _for_resource("firewall")

ROUTES = [
    Route("GET", "/actions", "get_multiple_actions", get_multiple_actions),
    Route("GET", "/actions/{id}", "get_action", get_action),
    Route("GET", "/servers/actions", "list_server_actions", _servers_list),
    Route("GET", "/servers/actions/{id}", "get_server_action", _servers_get),
    Route("GET", "/servers/{id}/actions", "list_actions_for_server", _server_list),
    Route("GET", "/servers/{id}/actions/{action_id}", "get_action_for_server", _server_get),
    Route("GET", "/firewalls/actions", "list_firewall_actions", _firewalls_list),
    Route("GET", "/firewalls/actions/{id}", "get_firewall_action", _firewalls_get),
    Route("GET", "/firewalls/{id}/actions", "list_actions_for_firewall", _firewall_list),
    Route("GET", "/firewalls/{id}/actions/{action_id}", "get_action_for_firewall", _firewall_get),
]
