"""The fleet filter: `/` text with `key:value` terms. Pure.

Grammar: whitespace-separated terms, all of which must match.
- `status:failed` (or `s:failed`), `loc:fsn1`, `customer:cus_1`, `ip:10.0.`, `id:42`,
  `drift:lost` (the reconciler's findings: lost, stuck, orphan, or `drift:any`),
  `health:unhealthy` (or `h:`; ready servers only: healthy, degraded, unhealthy,
  unknown, or `health:attention` for degraded and unhealthy);
  a value may list alternatives separated by commas: `status:creating,cloud_init`;
- `!term` or `-term` negates a term: `!status:ready`;
- any other word matches, case-insensitively, as a substring of the id,
  name, customer, status, health and its reason, address, location or last event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.domain.health import HealthState
from core.domain.lifecycle import IN_FLIGHT, Status
from tui.cells import Row, health_of

#: Short names accepted for filter keys.
ALIASES: dict[str, str] = {
    "s": "status",
    "status": "status",
    "loc": "location",
    "location": "location",
    "l": "location",
    "c": "customer",
    "customer": "customer",
    "ip": "ip",
    "ipv4": "ip",
    "id": "id",
    "name": "name",
    "drift": "drift",
    "h": "health",
    "health": "health",
}
#: Groups usable as values, per key: `status:inflight`, `health:attention`.
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "status": {
        "inflight": tuple(s.value for s in IN_FLIGHT),
        "live": tuple(s.value for s in Status if s != Status.DELETED),
    },
    "health": {"attention": (HealthState.DEGRADED.value, HealthState.UNHEALTHY.value)},
}
#: Keys the quick filters set: a quick filter replaces the terms of its own key.
QUICK_KEYS = ("status", "health")
#: Number keys of the fleet screen and the term each sets (None clears them all).
QUICK_FILTERS: dict[str, str | None] = {
    "0": None,
    "1": "status:inflight",
    "2": "status:ready",
    "3": "status:failed",
    "4": "status:deprovisioning",
    "5": "status:deleted",
    "6": "health:unhealthy",
    "7": "health:attention",
}


@dataclass(frozen=True)
class Term:
    """One parsed filter term."""

    key: str | None  # None: free text
    values: tuple[str, ...]
    negate: bool = False


def parse(query: str) -> list[Term]:
    """Split a filter query into terms (unknown `key:` prefixes are free text)."""
    terms = []
    for word in query.split():
        negate = word[0] in "!-" and len(word) > 1
        body = word[1:] if negate else word
        key, sep, value = body.partition(":")
        canonical = ALIASES.get(key.lower()) if sep else None
        if canonical is not None and value:
            values: list[str] = []
            groups = GROUPS.get(canonical, {})
            for v in value.lower().split(","):
                values.extend(groups.get(v, (v,)))
            terms.append(Term(canonical, tuple(v for v in values if v), negate))
        else:
            terms.append(Term(None, (body.lower(),), negate))
    return terms


def _field_matchers(row: Row) -> dict[str, Callable[[str], bool]]:
    s = row.server
    return {
        "status": lambda v: s.status == v,
        "location": lambda v: s.location.lower() == v,
        "customer": lambda v: v in s.customer.lower(),
        "ip": (s.ipv4 or "").startswith,
        "id": lambda v: str(s.id) == v,
        "name": lambda v: v in (s.name or "").lower(),
        "drift": lambda v: s.drift is not None and v in ("any", s.drift),
        "health": lambda v: health_of(s) == v,
    }


def haystack(row: Row) -> str:
    """The text free-text terms search in."""
    s = row.server
    event = row.last_event
    parts = [str(s.id), s.name or "", s.customer, s.status, s.ipv4 or "", s.location]
    parts += [s.drift or "", s.drift_reason or "", health_of(s) or "", s.health_reason or ""]
    if event is not None:
        parts.append(event.message)
    return " ".join(parts).lower()


def matches(row: Row, terms: list[Term]) -> bool:
    """Whether `row` satisfies every term."""
    if not terms:
        return True
    matchers = _field_matchers(row)
    text: str | None = None
    for term in terms:
        if term.key is None:
            if text is None:
                text = haystack(row)
            hit = term.values[0] in text
        else:
            hit = any(matchers[term.key](v) for v in term.values)
        if hit == term.negate:
            return False
    return True


def wants_deleted(terms: list[Term]) -> bool:
    """Whether the query asks for deleted servers explicitly (`status:deleted`)."""
    return any(t.key == "status" and not t.negate and "deleted" in t.values for t in terms)


def _key_of(word: str) -> str | None:
    key, sep, _ = word.lstrip("!-").partition(":")
    return ALIASES.get(key.lower()) if sep else None


def with_quick_term(query: str, term: str | None) -> str:
    """`query` with the terms of `term`'s key (status, health) replaced by `term`.

    None removes every status and health term (show all).
    """
    replaced = (_key_of(term),) if term else QUICK_KEYS
    kept = [w for w in query.split() if _key_of(w) not in replaced]
    if term:
        kept.insert(0, term)
    return " ".join(kept)
