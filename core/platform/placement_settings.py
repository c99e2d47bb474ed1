"""Where new servers go: the ordered locations and server types to try, and Hetzner's zones.

Declared apart from `core.platform.settings` (which inherits them, as it does
`core.platform.health_settings`). `RACHEL_LOCATION` and `RACHEL_SERVER_TYPE`
each take one value (the setting as it was) or a comma-separated list in
order of preference: the first is what a deploy gets, the others are where
the creating job falls back to when Hetzner has no room
(`core.domain.placement`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from core.platform.settings_parsing import parse_list
from core.platform.settings_spec import DeclaredSettings, setting

#: Hetzner's network zones (the `network_zone` of each location object): a
#: zone's locations share a private backbone, so a server may move between them
#: without changing what its owner sees of latency or jurisdiction.
NETWORK_ZONES: Mapping[str, str] = MappingProxyType(
    {
        "fsn1": "eu-central",
        "nbg1": "eu-central",
        "hel1": "eu-central",
        "ash": "us-east",
        "hil": "us-west",
        "sin": "ap-southeast",
    }
)

# As the deploy webhook accepts a location or a server type.
_PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,31}")


def network_zone(location: str) -> str | None:
    """The network zone of a Hetzner location; None for a location we do not know."""
    return NETWORK_ZONES.get(location)


def provider_name(text: str, what: str) -> str:
    """`text` as a Hetzner location or server type name (lower case), or ValueError."""
    name = text.strip().lower()
    if not _PROVIDER_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a Hetzner {what} name (a-z, 0-9, -)")
    return name


def _names(text: str, what: str) -> tuple[str, ...]:
    names = tuple(provider_name(name, what) for name in parse_list(text))
    if not names:
        raise ValueError(f"expected at least one {what}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{', '.join(repeated)} listed more than once")
    return names


def parse_locations(text: str) -> tuple[str, ...]:
    """Locations in order of preference, all in one network zone.

    A location whose zone is not known here (one Hetzner opened since) is
    accepted; two known locations of different zones are refused.
    """
    names = _names(text, "location")
    zones: dict[str, list[str]] = {}
    for name in names:
        zone = network_zone(name)
        if zone is not None:
            zones.setdefault(zone, []).append(name)
    if len(zones) > 1:
        mixed = "; ".join(f"{zone}: {', '.join(where)}" for zone, where in zones.items())
        raise ValueError(
            f"the locations must share one network zone, got {mixed} (a fallback must not "
            "move a customer's server to another region)"
        )
    return names


def parse_server_types(text: str) -> tuple[str, ...]:
    """Server types in order of preference."""
    return _names(text, "server type")


@dataclass(frozen=True, kw_only=True)
class PlacementSettings(DeclaredSettings):
    """Where new servers are created, and where they go when Hetzner has no room."""

    locations: tuple[str, ...] = setting(
        "RACHEL_LOCATION",
        "fsn1,nbg1,hel1",
        "Hetzner location of new servers, or a comma-separated list in order of preference, "
        "all in one network zone (eu-central: fsn1, nbg1, hel1): the first is the default; "
        "when Hetzner has no room (`resource_unavailable`, `placement_error`) the creating "
        "job tries the next.",
        parse_locations,
    )
    server_types: tuple[str, ...] = setting(
        "RACHEL_SERVER_TYPE",
        "cx23",
        "Hetzner server type of new servers, or a comma-separated list in order of "
        "preference: the first is the default; when no listed location has room for it the "
        "creating job tries the next type (the types after a deploy's own, only).",
        parse_server_types,
    )

    @property
    def location(self) -> str:
        """The location a deploy gets unless it names one."""
        return self.locations[0]

    @property
    def server_type(self) -> str:
        """The server type a deploy gets unless it names one."""
        return self.server_types[0]
