"""The fleet filter: `/` text with `key:value` terms. Pure.

Grammar: whitespace-separated terms, all of which must match.
- `status:failed` (or `s:failed`), `loc:fsn1`, `customer:cus_1`, `ip:10.0.`, `id:42`,
  `drift:lost` (the reconciler's findings: lost, stuck, orphan, or `drift:any`);
  a value may list alternatives separated by commas: `status:creating,cloud_init`;
- `!term` or `-term` negates a term: `!status:ready`;
- any other word matches, case-insensitively, as a substring of the id,
  name, customer, status, address, location or last event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.domain.lifecycle import IN_FLIGHT, Status
from tui.cells import Row

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
}
#: Status groups usable as values: `status:inflight`.
GROUPS: dict[str, tuple[str, ...]] = {
    "inflight": tuple(s.value for s in IN_FLIGHT),
    "live": tuple(s.value for s in Status if s != Status.DELETED),
}
#: Number keys of the fleet screen and the status term each sets (None clears it).
QUICK_FILTERS: dict[str, str | None] = {
    "0": None,
    "1": "status:inflight",
    "2": "status:ready",
    "3": "status:failed",
    "4": "status:deprovisioning",
    "5": "status:deleted",
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
            for v in value.lower().split(","):
                values.extend(GROUPS.get(v, (v,)) if canonical == "status" else (v,))
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
    }


def haystack(row: Row) -> str:
    """The text free-text terms search in."""
    s = row.server
    event = row.last_event
    parts = [str(s.id), s.name or "", s.customer, s.status, s.ipv4 or "", s.location]
    parts += [s.drift or "", s.drift_reason or ""]
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


def with_status_term(query: str, term: str | None) -> str:
    """`query` with its status terms replaced by `term` (None removes them)."""
    kept = [
        w
        for w in query.split()
        if not (
            w.lstrip("!-").partition(":")[1]
            and ALIASES.get(w.lstrip("!-").partition(":")[0].lower()) == "status"
        )
    ]
    if term:
        kept.insert(0, term)
    return " ".join(kept)
