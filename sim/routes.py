"""Route table type and path-template matching (pure)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim.http import Response


@dataclass(frozen=True)
class Route:
    """One endpoint.

    Attributes:
        method: HTTP method.
        template: path template, `{name}` for a path parameter.
        operation: the spec's operationId; names the endpoint in stats and faults.
        handler: `handler(sim, request, **path_params) -> Response`.
    """

    method: str
    template: str
    operation: str
    handler: Callable[..., Response | Awaitable[Response]]
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.template)
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))


def order(routes: list[Route]) -> list[Route]:
    """Literal paths before templated ones, so `/servers/actions` beats `/servers/{id}`."""
    return sorted(routes, key=lambda r: r.template.count("{"))


def match(routes: list[Route], method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
    """Find the route for (method, path).

    Returns:
        The route (or None), its path parameters, and whether the path exists
        under another method.
    """
    path_exists = False
    for route in routes:
        found = route.pattern.match(path)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict(), True
        path_exists = True
    return None, {}, path_exists
