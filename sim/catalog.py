"""The simulator's fixed catalog: locations, datacenters, server types, images.

Modelled on Hetzner's public catalog (names, sizes and rough prices), so code
written against the simulator picks the same names it would on Hetzner.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_CREATED = "2024-01-01T00:00:00Z"

# id, name, description, country, city, latitude, longitude, network zone, datacenter
_LOCATIONS: list[tuple[int, str, str, str, str, float, float, str, str]] = [
    (
        1,
        "fsn1",
        "Falkenstein DC Park 1",
        "DE",
        "Falkenstein",
        50.47612,
        12.370071,
        "eu-central",
        "fsn1-dc14",
    ),
    (
        2,
        "nbg1",
        "Nuremberg DC Park 1",
        "DE",
        "Nuremberg",
        49.452102,
        11.076665,
        "eu-central",
        "nbg1-dc3",
    ),
    (
        3,
        "hel1",
        "Helsinki DC Park 1",
        "FI",
        "Helsinki",
        60.169855,
        24.938379,
        "eu-central",
        "hel1-dc2",
    ),
    (4, "ash", "Ashburn, VA", "US", "Ashburn, VA", 39.045821, -77.487073, "us-east", "ash-dc1"),
    (5, "hil", "Hillsboro, OR", "US", "Hillsboro, OR", 45.54222, -122.95125, "us-west", "hil-dc1"),
    (6, "sin", "Singapore", "SG", "Singapore", 1.283333, 103.833333, "ap-southeast", "sin-dc1"),
]

_EU = ("fsn1", "nbg1", "hel1")
_ALL = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")

# id, name, description, cores, memory GB, disk GB, cpu type, arch, category,
# monthly net EUR, locations
_SERVER_TYPES: list[
    tuple[int, str, str, int, float, int, str, str, str, float, tuple[str, ...]]
] = [
    (114, "cx23", "CX23", 2, 4.0, 40, "shared", "x86", "cost_optimized", 3.49, _EU),
    (115, "cx33", "CX33", 4, 8.0, 80, "shared", "x86", "cost_optimized", 5.49, _EU),
    (116, "cx43", "CX43", 8, 16.0, 160, "shared", "x86", "cost_optimized", 9.49, _EU),
    (108, "cpx22", "CPX22", 2, 4.0, 80, "shared", "x86", "regular_purpose", 5.99, _ALL),
    (109, "cpx32", "CPX32", 4, 8.0, 160, "shared", "x86", "regular_purpose", 10.49, _ALL),
    (45, "cax11", "CAX11", 2, 4.0, 40, "shared", "arm", "cost_optimized", 3.79, _EU),
    (93, "cax21", "CAX21", 4, 8.0, 80, "shared", "arm", "cost_optimized", 6.49, _EU),
    (96, "ccx13", "CCX13", 2, 8.0, 80, "dedicated", "x86", "general_purpose", 12.49, _ALL),
]

# id, name, description, os flavor, os version, architecture
_IMAGES: list[tuple[int, str, str, str, str, str]] = [
    (114690387, "debian-12", "Debian 12", "debian", "12", "x86"),
    (114690389, "debian-12", "Debian 12", "debian", "12", "arm"),
    (161547269, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", "x86"),
    (161547270, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", "arm"),
]


def _money(amount: float) -> dict[str, str]:
    return {"net": f"{amount:.4f}", "gross": f"{amount * 1.19:.4f}"}


def location(name: str) -> dict[str, Any] | None:
    """The location object named `name`, or None."""
    return next((loc for loc in locations() if loc["name"] == name), None)


def locations() -> list[dict[str, Any]]:
    """Every location, ordered by id."""
    return [
        {
            "id": lid,
            "name": name,
            "description": desc,
            "country": country,
            "city": city,
            "latitude": lat,
            "longitude": lon,
            "network_zone": zone,
        }
        for lid, name, desc, country, city, lat, lon, zone, _dc in _LOCATIONS
    ]


def datacenter_for(location_name: str) -> dict[str, Any]:
    """The (single) datacenter of a location, as embedded in a server."""
    row = next(r for r in _LOCATIONS if r[1] == location_name)
    available = [t[0] for t in _SERVER_TYPES if location_name in t[10]]
    return {
        "id": row[0],
        "name": row[8],
        "description": f"{row[4]} DC {row[0]}",
        "location": location(location_name),
        "server_types": {
            "available": available,
            "available_for_migration": available,
            "supported": available,
        },
    }


def _always(location: str, server_type: str) -> bool:
    return True


def _server_type(
    row: tuple[Any, ...], available: Callable[[str, str], bool] = _always
) -> dict[str, Any]:
    tid, name, desc, cores, memory, disk, cpu, arch, category, price, where = row
    loc_ids = {loc[1]: loc[0] for loc in _LOCATIONS}
    return {
        "id": tid,
        "name": name,
        "description": desc,
        "category": category,
        "cores": cores,
        "memory": memory,
        "disk": disk,
        "cpu_type": cpu,
        "architecture": arch,
        "storage_type": "local",
        "deprecated": False,
        "deprecation": None,
        "prices": [
            {
                "location": loc,
                "price_hourly": _money(round(price / 730, 4)),
                "price_monthly": _money(price),
                "included_traffic": 21990232555520 if loc in _EU else 1099511627776,
                "price_per_tb_traffic": _money(1.0 if loc in _EU else 7.2),
            }
            for loc in where
        ],
        # hcloud >= 2.18 requires `available` and `recommended` per location.
        "locations": [
            {
                "id": loc_ids[loc],
                "name": loc,
                "deprecation": None,
                "available": available(loc, name),
                "recommended": available(loc, name),
            }
            for loc in where
        ],
    }


def server_types(available: Callable[[str, str], bool] = _always) -> list[dict[str, Any]]:
    """Every server type, ordered by id, with the fields hcloud 2.27 requires.

    Args:
        available: `(location, type name) -> bool`: whether the type can be
            ordered there now (`locations[].available`, `recommended`).
    """
    return [_server_type(row, available) for row in sorted(_SERVER_TYPES)]


def server_type(ref: str | int) -> dict[str, Any] | None:
    """Look a server type up by id or name (only that one is built: once per create)."""
    row = next((t for t in sorted(_SERVER_TYPES) if ref in (t[0], t[1], str(t[0]))), None)
    return None if row is None else _server_type(row)


def images() -> list[dict[str, Any]]:
    """Every system image, ordered by id."""
    return [
        {
            "id": iid,
            "type": "system",
            "status": "available",
            "name": name,
            "description": desc,
            "image_size": None,
            "disk_size": 5,
            "created": _CREATED,
            "created_from": None,
            "bound_to": None,
            "os_flavor": flavor,
            "os_version": version,
            "rapid_deploy": True,
            "protection": {"delete": False},
            "deprecated": None,
            "deleted": None,
            "labels": {},
            "architecture": arch,
        }
        for iid, name, desc, flavor, version, arch in _IMAGES
    ]


def image(ref: str | int, architecture: str) -> dict[str, Any] | None:
    """Look an image up by id, or by name for the given architecture."""
    for img in images():
        if ref in (img["id"], str(img["id"])):
            return img
        if ref == img["name"] and img["architecture"] == architecture:
            return img
    return None
