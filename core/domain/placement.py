"""Where to create a server when Hetzner has no room: the capacity fallback, as pure decisions.

A server is created at its own (location, server type): the deploy's, else
the first of `RACHEL_LOCATION` and `RACHEL_SERVER_TYPE`. When Hetzner answers
`resource_unavailable` or `placement_error`, the creating job tries the next
location of the list (the same network zone only), and when no location has
room, the next server type: `plan` orders the pairs, `next_pair` picks the
first one not refused yet and not advertised unavailable by the API
(`GET /server_types`), or says the plan is exhausted.

What was refused is kept on the server's timeline: one `capacity` Event per
decision, whose text `refusal_event` writes and `parse_refusal` reads back, so
that a creating job run again (a transient error, a killed worker) resumes
where the last one stopped instead of knocking on a full location again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from core.cloud.provider import CAPACITY_CODES, CapacityError
from core.platform.placement_settings import network_zone

#: The kind of the timeline Events that record placement decisions.
EVENT_KIND = "capacity"

#: Longest API message kept in an Event (the rest is in the worker's log).
_DETAIL_LIMIT = 300


@dataclass(frozen=True)
class Pair:
    """A place to create a server: a Hetzner location and a server type."""

    location: str
    server_type: str

    def __str__(self) -> str:
        return f"{self.location}/{self.server_type}"


@dataclass(frozen=True)
class Refusal:
    """Hetzner refused to create a server at `pair`.

    Attributes:
        code: `resource_unavailable` or `placement_error`.
        detail: the API's message (with its correlation id, when it gave one).
    """

    pair: Pair
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.pair}: {self.code}: {self.detail}"


@dataclass(frozen=True)
class Attempt:
    """Create at `pair`; `skipped` were passed over as the API advertises them unavailable."""

    pair: Pair
    skipped: tuple[Pair, ...] = ()


@dataclass(frozen=True)
class Exhausted:
    """No pair of the plan is left: each was refused or is advertised unavailable."""

    refused: tuple[Refusal, ...]
    skipped: tuple[Pair, ...]

    @property
    def reason(self) -> str:
        """Why the server cannot be created, naming every pair and what became of it."""
        parts = [f"{r.pair} {r.code}" for r in self.refused]
        parts += [f"{p} advertised unavailable" for p in self.skipped]
        return f"no room for the server anywhere it may go: {', '.join(parts)}"


Decision = Attempt | Exhausted

#: Server type -> location -> whether the API says the type can be ordered
#: there now (`HetznerAdapter.server_type_availability`).
Availability = Mapping[str, Mapping[str, bool]]


def fallback_locations(origin: str, locations: Sequence[str]) -> tuple[str, ...]:
    """`origin`, then the configured locations it may fall back to, in order.

    Only locations of `origin`'s network zone: a customer's server never moves
    to another region. A location of a zone we do not know falls back to
    nothing but the configured list it belongs to (which settings checked).
    """
    if origin in locations:
        return (origin, *(loc for loc in locations if loc != origin))
    zone = network_zone(origin)
    if zone is None:
        return (origin,)
    return (origin, *(loc for loc in locations if network_zone(loc) == zone))


def fallback_types(origin: str, server_types: Sequence[str]) -> tuple[str, ...]:
    """`origin`, then the configured types after it (never one the list prefers less).

    A type the list does not hold (a deploy named it) has no fallback: the
    customer asked for it, and another one would be a different product.
    """
    if origin not in server_types:
        return (origin,)
    return tuple(server_types[server_types.index(origin) :])


def plan(origin: Pair, locations: Sequence[str], server_types: Sequence[str]) -> tuple[Pair, ...]:
    """Every pair to try, in order: each location of a type before the next type."""
    return tuple(
        Pair(loc, kind)
        for kind in fallback_types(origin.server_type, server_types)
        for loc in fallback_locations(origin.location, locations)
    )


def advertised_unavailable(pair: Pair, availability: Availability) -> bool:
    """Whether the API says `pair` cannot be ordered now (False when it did not say).

    A location missing from a type's known availability does not offer the
    type at all: a create there would be refused too.
    """
    where = availability.get(pair.server_type)
    if where is None:
        return False
    return not where.get(pair.location, False)


def next_pair(
    candidates: Sequence[Pair], refused: Iterable[Refusal], availability: Availability
) -> Decision:
    """The first pair neither refused nor advertised unavailable, or `Exhausted`.

    The availability only saves create calls: a pair it says has room may
    still be refused (the caller records that and asks again).
    """
    refusals = tuple(refused)
    tried = {r.pair for r in refusals}
    skipped: list[Pair] = []
    for pair in candidates:
        if pair in tried:
            continue
        if advertised_unavailable(pair, availability):
            skipped.append(pair)
            continue
        return Attempt(pair, tuple(skipped))
    return Exhausted(refusals, tuple(skipped))


def exhausted_error(decision: Exhausted) -> CapacityError:
    """The permanent error that fails a server no pair has room for."""
    code = decision.refused[-1].code if decision.refused else "resource_unavailable"
    return CapacityError(decision.reason, code=code, transient=False)


def origin_of(current: Pair, refused: Sequence[Refusal]) -> Pair:
    """Where this attempt started: the first pair refused, else the server's own."""
    return refused[0].pair if refused else current


def refusal(pair: Pair, error: CapacityError) -> Refusal:
    """The refusal `error` says, without the adapter's `create server: code:` prefix."""
    detail = error.message
    prefix = f"create server: {error.code}: "
    if detail.startswith(prefix):
        detail = detail[len(prefix) :]
    return Refusal(pair, error.code, _one_line(detail))


def _one_line(text: str) -> str:
    flat = " ".join(text.split()).replace(";", ",")
    return flat if len(flat) <= _DETAIL_LIMIT else flat[: _DETAIL_LIMIT - 3] + "..."


def refusal_event(refused: Refusal | None, decision: Decision) -> str:
    """The timeline's text for one decision: what was refused, what is skipped, what next.

    `fsn1/cx23: resource_unavailable: ...; nbg1/cx23 advertised unavailable;
    trying hel1/cx23`. Its first part is what `parse_refusal` reads back.
    """
    parts = [str(refused)] if refused is not None else []
    skipped = decision.skipped
    parts += [f"{p} advertised unavailable" for p in skipped]
    if isinstance(decision, Attempt):
        parts.append(f"trying {decision.pair}")
    else:
        parts.append("no other location or server type left")
    return "; ".join(parts)


_REFUSAL = re.compile(
    r"^(?P<location>[a-z0-9-]+)/(?P<server_type>[a-z0-9-]+): "
    r"(?P<code>[a-z_]+): (?P<detail>[^;]*)(?:;|$)"
)


def parse_refusal(message: str) -> Refusal | None:
    """The refusal a `refusal_event` text records, if it records one."""
    found = _REFUSAL.match(message)
    if found is None or found["code"] not in CAPACITY_CODES:
        return None
    pair = Pair(found["location"], found["server_type"])
    return Refusal(pair, found["code"], found["detail"])
