"""JSON shapes of the simulated resources, as the Hetzner API returns them."""

from __future__ import annotations

from typing import Any

from sim import catalog
from sim.labels import SelectorError, selector_matches
from sim.state import Action, Firewall, Image, Server, SshKey, Store


def action(a: Action) -> dict[str, Any]:
    """An action object."""
    return {
        "id": a.id,
        "command": a.command,
        "status": a.status,
        "progress": a.progress,
        "started": a.started,
        "finished": a.finished,
        "resources": [dict(r) for r in a.resources],
        "error": dict(a.error) if a.error else None,
    }


def image(i: Image) -> dict[str, Any]:
    """A snapshot image object (system images are `sim.catalog.images`)."""
    server_id, server_name = i.created_from
    return {
        "id": i.id,
        "type": i.type,
        "status": i.status,
        "name": None,  # only system images have one
        "description": i.description,
        "image_size": i.image_size,
        "disk_size": i.disk_size,
        "created": i.created,
        "created_from": {"id": server_id, "name": server_name},
        "bound_to": None,  # only backups are bound to their server
        "os_flavor": i.base["os_flavor"],
        "os_version": i.base["os_version"],
        "rapid_deploy": False,
        "protection": {"delete": False},
        "deprecated": None,
        "deleted": None,
        "labels": dict(i.labels),
        "architecture": i.architecture,
    }


def ssh_key(k: SshKey) -> dict[str, Any]:
    """An SSH key object."""
    return {
        "id": k.id,
        "name": k.name,
        "fingerprint": k.fingerprint,
        "public_key": k.public_key,
        "labels": dict(k.labels),
        "created": k.created,
    }


def _selector_hits(selector: str, server: Server) -> bool:
    try:
        return selector_matches(selector, server.labels)
    except SelectorError:  # pragma: no cover - selectors are validated when stored
        return False


def firewalls_of(store: Store, server: Server) -> list[int]:
    """Ids of the firewalls applied to `server`, directly or by label selector."""
    return [
        fw.id
        for fw in store.firewalls.values()
        if server.id in fw.servers or any(_selector_hits(s, server) for s in fw.selectors)
    ]


def firewall(store: Store, fw: Firewall) -> dict[str, Any]:
    """A firewall object, with the servers its label selectors currently match."""
    applied: list[dict[str, Any]] = [
        {"type": "server", "server": {"id": sid}} for sid in fw.servers
    ]
    for selector in fw.selectors:
        matched = [s.id for s in store.servers.values() if _selector_hits(selector, s)]
        applied.append(
            {
                "type": "label_selector",
                "label_selector": {"selector": selector},
                "applied_to_resources": [
                    {"type": "server", "server": {"id": sid}} for sid in matched
                ],
            }
        )
    return {
        "id": fw.id,
        "name": fw.name,
        "labels": dict(fw.labels),
        "created": fw.created,
        "rules": [dict(r) for r in fw.rules],
        "applied_to": applied,
    }


def server(store: Store, s: Server) -> dict[str, Any]:
    """A server object with everything the spec and hcloud 2.27 require."""
    location = catalog.location(s.location)
    public_net: dict[str, Any] = {
        # hcloud requires `ipv4.id` (the primary IP), which the spec marks optional.
        "ipv4": (
            {"id": s.ipv4_id, "ip": s.ipv4, "blocked": False, "dns_ptr": f"static.{s.ipv4}.sim"}
            if s.ipv4
            else None
        ),
        "ipv6": (
            {"id": s.ipv6_id, "ip": s.ipv6, "blocked": False, "dns_ptr": []} if s.ipv6 else None
        ),
        "floating_ips": [],
        "firewalls": [{"id": fid, "status": "applied"} for fid in firewalls_of(store, s)],
    }
    return {
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "created": s.created,
        "public_net": public_net,
        "private_net": [],
        "server_type": s.server_type,
        "datacenter": catalog.datacenter_for(s.location),
        "location": location,
        "image": s.image,
        "iso": None,
        "rescue_enabled": False,
        "locked": s.imaging is not None,
        "backup_window": None,
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": s.server_type["prices"][0]["included_traffic"],
        "protection": {"delete": False, "rebuild": False},
        "labels": dict(s.labels),
        "volumes": [],
        "load_balancers": [],
        "primary_disk_size": s.server_type["disk"],
        "placement_group": None,
    }
