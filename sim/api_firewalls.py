"""`/firewalls`: create, list, get, update, set_rules, apply/remove, delete."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from sim import render
from sim.engine import Simulator
from sim.errors import invalid_field, not_found, uniqueness
from sim.http import (
    Request,
    Response,
    labels_field,
    list_field,
    list_response,
    parse_id,
    select,
    text_field,
)
from sim.labels import SelectorError, parse_selector
from sim.routes import Route
from sim.state import Action, Firewall

_SORT = {"id": lambda f: f.id, "name": lambda f: f.name, "created": lambda f: (f.created, f.id)}
_PROTOCOLS = ("esp", "gre", "icmp", "tcp", "udp")
_PORT = re.compile(r"^(?:any|\d{1,5}(?:-\d{1,5})?)$")


def _get(sim: Simulator, firewall_id: str) -> Firewall:
    firewall = sim.store.firewalls.get(parse_id(firewall_id))
    if firewall is None:
        raise not_found("firewall", firewall_id)
    return firewall


def _ips(rule: dict[str, Any], name: str) -> list[str]:
    ips = list_field(rule, name)
    for ip in ips:
        try:
            ipaddress.ip_network(ip, strict=False)
        except (TypeError, ValueError):
            raise invalid_field(f"rules.{name}", f"invalid network {ip!r}") from None
    return [str(ip) for ip in ips]


def parse_rules(raw: list[Any]) -> list[dict[str, Any]]:
    """Validate firewall rules and return them in the API's shape."""
    rules = []
    for rule in raw:
        if not isinstance(rule, dict):
            raise invalid_field("rules", "every rule must be an object")
        direction, protocol = rule.get("direction"), rule.get("protocol")
        if direction not in ("in", "out"):
            raise invalid_field("rules.direction", "must be in or out")
        if protocol not in _PROTOCOLS:
            raise invalid_field("rules.protocol", f"must be one of {', '.join(_PROTOCOLS)}")
        port = text_field(rule, "port")
        if protocol in ("tcp", "udp") and (port is None or not _PORT.match(port)):
            raise invalid_field("rules.port", "tcp and udp rules need a port or port range")
        if protocol not in ("tcp", "udp") and port is not None:
            raise invalid_field("rules.port", f"{protocol} rules take no port")
        source, destination = _ips(rule, "source_ips"), _ips(rule, "destination_ips")
        if direction == "in" and not source:
            raise invalid_field("rules.source_ips", "inbound rules need source_ips")
        if direction == "out" and not destination:
            raise invalid_field("rules.destination_ips", "outbound rules need destination_ips")
        rules.append(
            {
                "direction": direction,
                "protocol": protocol,
                "port": port,
                "source_ips": source,
                "destination_ips": destination,
                "description": text_field(rule, "description"),
            }
        )
    return rules


def _targets(sim: Simulator, raw: list[Any]) -> tuple[list[int], list[str]]:
    servers: list[int] = []
    selectors: list[str] = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise invalid_field("apply_to", "every entry must be an object")
        if entry.get("type") == "server":
            sid = (entry.get("server") or {}).get("id")
            if isinstance(sid, bool) or not isinstance(sid, int) or sid not in sim.store.servers:
                raise invalid_field("apply_to", f"server {sid!r} not found")
            servers.append(sid)
        elif entry.get("type") == "label_selector":
            selector = (entry.get("label_selector") or {}).get("selector")
            if not isinstance(selector, str) or not selector:
                raise invalid_field("apply_to", "label_selector needs a selector")
            try:
                parse_selector(selector)
            except SelectorError as exc:
                raise invalid_field("apply_to", str(exc)) from None
            selectors.append(selector)
        else:
            raise invalid_field("apply_to", "type must be server or label_selector")
    return servers, selectors


def _apply(sim: Simulator, fw: Firewall, servers: list[int], selectors: list[str]) -> list[Action]:
    actions = []
    for sid in servers:
        if sid in fw.servers:
            raise invalid_field("apply_to", f"firewall already applied to server {sid}")
    for selector in selectors:
        if selector in fw.selectors:
            raise invalid_field("apply_to", f"firewall already applied to {selector!r}")
    for sid in servers:
        fw.servers.append(sid)
        actions.append(
            sim.quick_action("apply_firewall", "firewalls", [("firewall", fw.id), ("server", sid)])
        )
    for selector in selectors:
        fw.selectors.append(selector)
        actions.append(sim.quick_action("apply_firewall", "firewalls", [("firewall", fw.id)]))
    return actions


def create_firewall(sim: Simulator, req: Request) -> Response:
    """POST /firewalls."""
    body = req.json()
    name = text_field(body, "name", required=True)
    assert name is not None
    labels = labels_field(body) or {}
    rules = parse_rules(list_field(body, "rules"))
    servers, selectors = _targets(sim, list_field(body, "apply_to"))
    if sim.store.firewall_named(name) is not None:
        raise uniqueness("name")
    firewall = Firewall(sim.store.next_firewall_id(), name, labels, rules)
    sim.store.firewalls[firewall.id] = firewall
    actions = [sim.quick_action("set_firewall_rules", "firewalls", [("firewall", firewall.id)])]
    actions += _apply(sim, firewall, servers, selectors)
    return Response(
        201,
        {
            "firewall": render.firewall(sim.store, firewall),
            "actions": [render.action(a) for a in actions],
        },
    )


def list_firewalls(sim: Simulator, req: Request) -> Response:
    """GET /firewalls."""
    firewalls = sorted(sim.store.firewalls.values(), key=lambda f: f.id)
    name = req.arg("name")
    if name is not None:
        firewalls = [f for f in firewalls if f.name == name]
    firewalls = select(req, firewalls, lambda f: f.labels)
    return list_response(
        req, "firewalls", firewalls, lambda f: render.firewall(sim.store, f), _SORT
    )


def show_firewall(sim: Simulator, req: Request, id: str) -> Response:
    """GET /firewalls/{id}."""
    return Response(200, {"firewall": render.firewall(sim.store, _get(sim, id))})


def update_firewall(sim: Simulator, req: Request, id: str) -> Response:
    """PUT /firewalls/{id}: name and labels."""
    firewall = _get(sim, id)
    body = req.json()
    name = text_field(body, "name")
    labels = labels_field(body)
    if name is not None:
        other = sim.store.firewall_named(name)
        if not name.strip():
            raise invalid_field("name", "must not be empty")
        if other is not None and other is not firewall:
            raise uniqueness("name")
        firewall.name = name
    if labels is not None:
        firewall.labels = labels
    return Response(200, {"firewall": render.firewall(sim.store, firewall)})


def set_rules(sim: Simulator, req: Request, id: str) -> Response:
    """POST /firewalls/{id}/actions/set_rules (replaces every rule)."""
    firewall = _get(sim, id)
    body = req.json()
    if "rules" not in body:
        raise invalid_field("rules", "is required")
    firewall.rules = parse_rules(list_field(body, "rules"))
    resources = [("firewall", firewall.id)] + [("server", sid) for sid in firewall.servers]
    action = sim.quick_action("set_firewall_rules", "firewalls", resources)
    return Response(201, {"actions": [render.action(action)]})


def apply_to_resources(sim: Simulator, req: Request, id: str) -> Response:
    """POST /firewalls/{id}/actions/apply_to_resources."""
    firewall = _get(sim, id)
    body = req.json()
    if "apply_to" not in body:
        raise invalid_field("apply_to", "is required")
    servers, selectors = _targets(sim, list_field(body, "apply_to"))
    actions = _apply(sim, firewall, servers, selectors)
    return Response(201, {"actions": [render.action(a) for a in actions]})


def remove_from_resources(sim: Simulator, req: Request, id: str) -> Response:
    """POST /firewalls/{id}/actions/remove_from_resources."""
    firewall = _get(sim, id)
    body = req.json()
    if "remove_from" not in body:
        raise invalid_field("remove_from", "is required")
    servers, selectors = _targets(sim, list_field(body, "remove_from"))
    for sid in servers:
        if sid not in firewall.servers:
            raise invalid_field("remove_from", f"firewall is not applied to server {sid}")
    for selector in selectors:
        if selector not in firewall.selectors:
            raise invalid_field("remove_from", f"firewall is not applied to {selector!r}")
    actions = []
    for sid in servers:
        firewall.servers.remove(sid)
        actions.append(
            sim.quick_action(
                "remove_firewall", "firewalls", [("firewall", firewall.id), ("server", sid)]
            )
        )
    for selector in selectors:
        firewall.selectors.remove(selector)
        actions.append(
            sim.quick_action("remove_firewall", "firewalls", [("firewall", firewall.id)])
        )
    return Response(201, {"actions": [render.action(a) for a in actions]})


def delete_firewall(sim: Simulator, req: Request, id: str) -> Response:
    """DELETE /firewalls/{id}."""
    firewall = _get(sim, id)
    del sim.store.firewalls[firewall.id]
    return Response(204)


ROUTES = [
    Route("POST", "/firewalls", "create_firewall", create_firewall),
    Route("GET", "/firewalls", "list_firewalls", list_firewalls),
    Route("GET", "/firewalls/{id}", "get_firewall", show_firewall),
    Route("PUT", "/firewalls/{id}", "replace_firewall", update_firewall),
    Route("DELETE", "/firewalls/{id}", "delete_firewall", delete_firewall),
    Route("POST", "/firewalls/{id}/actions/set_rules", "set_rules", set_rules),
    Route(
        "POST",
        "/firewalls/{id}/actions/apply_to_resources",
        "apply_to_resources",
        apply_to_resources,
    ),
    Route(
        "POST",
        "/firewalls/{id}/actions/remove_from_resources",
        "remove_from_resources",
        remove_from_resources,
    ),
]
