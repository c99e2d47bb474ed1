"""The waves of a rollout: reading them, and choosing which servers go in each (pure).

A rollout updates a canary of a few servers first, then the fleet up to each
cumulative share (`"canary,10%,50%,100%"`: one server, then up to 10% of the
fleet, then 50%, then everyone). The order is stable for a rollout (its seed)
and spread across locations, so that every wave spans them.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from core.domain.rollout_states import RolloutError

DEFAULT_WAVES = "canary,10%,50%,100%"


_COUNT = re.compile(r"[0-9]+")
_SHARE = re.compile(r"([0-9]+(?:\.[0-9]+)?)%")


@dataclass(frozen=True)
class Waves:
    """A canary of `canary` servers, then waves up to each cumulative share of the fleet."""

    canary: int
    shares: tuple[float, ...]

    def text(self) -> str:
        """The waves as `parse_waves` reads them."""
        head = "canary" if self.canary == 1 else str(self.canary)
        return ",".join([head, *(f"{share * 100:g}%" for share in self.shares)])


def parse_waves(text: str) -> Waves:
    """Read `"canary,10%,50%,100%"` (a canary of one) or `"2,25%,100%"` (a canary of two).

    Raises:
        RolloutError: code `invalid_waves`, saying what is wrong.
    """
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or not parts or any(not part for part in parts):
        raise _bad_waves(text, "give a canary then shares, e.g. canary,10%,50%,100%")
    head, rest = parts[0].lower(), parts[1:]
    if head == "canary":
        canary = 1
    elif _COUNT.fullmatch(head):
        canary = int(head)
        if canary < 1:
            raise _bad_waves(text, "the canary needs at least one server")
    else:
        raise _bad_waves(text, f"the first wave is the canary: `canary` or a count, not {head!r}")
    if not rest:
        raise _bad_waves(text, "after the canary give the shares, ending at 100%")
    shares: list[float] = []
    for part in rest:
        match = _SHARE.fullmatch(part)
        if match is None:
            raise _bad_waves(text, f"{part!r} is not a share such as 25%")
        share = float(match.group(1)) / 100
        if share <= 0:
            raise _bad_waves(text, f"{part} is not above 0%")
        if share > 1:
            raise _bad_waves(text, f"{part} is above 100%")
        if shares and share <= shares[-1]:
            raise _bad_waves(text, f"the shares must increase ({part} after {shares[-1]:.0%})")
        shares.append(share)
    if shares[-1] != 1.0:
        raise _bad_waves(text, "the last wave must be 100%: a rollout ends with the whole fleet")
    return Waves(canary, tuple(shares))


def _bad_waves(text: str, why: str) -> RolloutError:
    return RolloutError(f"invalid waves {text!r}: {why}", code="invalid_waves")


@dataclass(frozen=True)
class Candidate:
    """A server a rollout may update."""

    server_id: int
    location: str


def _rank(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


def order(candidates: Sequence[Candidate], seed: int) -> list[Candidate]:
    """The rollout's order: round-robin across locations, each shuffled by the seed.

    Within a location servers come in the order of a hash of the seed and their
    id; locations take turns (in an order of their own hash), so that any run of
    consecutive servers spans as many locations as it can.
    """
    by_location: dict[str, list[Candidate]] = {}
    for candidate in candidates:
        by_location.setdefault(candidate.location, []).append(candidate)
    queues = [
        sorted(group, key=lambda c: (_rank(seed, str(c.server_id)), c.server_id))
        for _, group in sorted(by_location.items(), key=lambda kv: (_rank(seed, kv[0]), kv[0]))
    ]
    ordered: list[Candidate] = []
    for turn in range(max((len(q) for q in queues), default=0)):
        ordered.extend(q[turn] for q in queues if turn < len(q))
    return ordered


def wave_sizes(count: int, waves: Waves) -> list[int]:
    """How many of `count` servers each wave holds (empty waves dropped)."""
    cumulative = [min(waves.canary, count)]
    for share in waves.shares:
        cumulative.append(max(cumulative[-1], math.ceil(round(share * count, 9))))
    sizes = [b - a for a, b in zip([0, *cumulative], cumulative, strict=False)]
    return [size for size in sizes if size > 0]


def plan(candidates: Sequence[Candidate], waves: Waves, seed: int) -> list[list[int]]:
    """The server ids of each wave, canary first; every candidate in exactly one wave.

    Wave k holds the servers up to `ceil(share_k * n)` of the `order`, counted
    from the start (so the shares are cumulative); a wave left empty by the
    rounding is dropped.
    """
    ordered = order(candidates, seed)
    result: list[list[int]] = []
    start = 0
    for size in wave_sizes(len(ordered), waves):
        result.append([c.server_id for c in ordered[start : start + size]])
        start += size
    return result
