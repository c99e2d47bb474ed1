"""Capacity faults: a location without room for a server type, as Hetzner reports it.

In the fault document (`sim.faults`, `"capacity"`), each rule names a
location and a server type (either left out: every one) and what creating
such a server answers: 412 `resource_unavailable` (the location is out of
that type, as Hetzner said of a location in January 2026) or 422
`placement_error` (the placement failed). `advertised` (default true) makes
`GET /server_types` say so too (`locations[].available: false`,
`recommended: false`), as Hetzner does when it knows ahead; false leaves the
catalogue optimistic, so only the create tells. `count` spends the rule after
that many refused creates (capacity came back); without it, it holds.

```json
{"capacity": [{"location": "fsn1", "server_type": "cx23"},
              {"location": "nbg1", "code": "placement_error", "count": 1}]}
```
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from sim import catalog

#: The error codes a capacity rule may answer with.
CAPACITY_CODES = ("resource_unavailable", "placement_error")


class CapacityFault(msgspec.Struct, forbid_unknown_fields=True):
    """One location (or all) without room for one server type (or all).

    Attributes:
        location: a location name; None: every location.
        server_type: a server type name; None: every type.
        code: what a create answers (one of `CAPACITY_CODES`).
        advertised: whether `GET /server_types` shows the type unavailable there.
        count: how many more creates it refuses; None: every one.
    """

    location: str | None = None
    server_type: str | None = None
    code: str = "resource_unavailable"
    advertised: bool = True
    count: int | None = None

    def hits(self, location: str, server_type: str) -> bool:
        """Whether this rule, unspent, refuses `server_type` in `location`."""
        return (
            self.count != 0
            and self.location in (None, location)
            and self.server_type in (None, server_type)
        )


def problem(rules: list[CapacityFault]) -> str | None:
    """What is wrong with the capacity rules, or None."""
    for index, rule in enumerate(rules):
        where = f"capacity[{index}]"
        if rule.location is not None and catalog.location(rule.location) is None:
            return f"{where}.location: unknown location {rule.location!r}"
        if rule.server_type is not None and catalog.server_type(rule.server_type) is None:
            return f"{where}.server_type: unknown server type {rule.server_type!r}"
        if rule.code not in CAPACITY_CODES:
            return f"{where}.code: must be one of {', '.join(CAPACITY_CODES)}, got {rule.code!r}"
        if rule.count is not None and rule.count < 0:
            return f"{where}.count must not be negative"
    return None


def refusal(rules: list[CapacityFault], location: str, server_type: str) -> CapacityFault | None:
    """The first rule that refuses creating `server_type` in `location` (the caller spends it)."""
    return next((r for r in rules if r.hits(location, server_type)), None)


def message(rule: CapacityFault, location: str, server_type: str) -> str:
    """The error message of a refused create, in Hetzner's words."""
    if rule.code == "placement_error":
        return f"error during placement of server type {server_type} in location {location}"
    return f"server type {server_type} is currently unavailable in location {location}"


def availability(rules: list[CapacityFault]) -> Callable[[str, str], bool]:
    """`(location, server_type) -> available` as `GET /server_types` shows it."""
    shown = [r for r in rules if r.advertised]

    def available(location: str, server_type: str) -> bool:
        return not any(r.hits(location, server_type) for r in shown)

    return available
