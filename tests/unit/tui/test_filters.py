"""The fleet filter's terms and the quick filters."""

from __future__ import annotations

from tests.unit.tui.rows import row
from tui.filters import matches, parse, wants_deleted, with_quick_term


def test_filter_terms() -> None:
    rows = [row(1), row(2, "failed"), row(3, "creating", location="nbg1"), row(4, "deleted")]

    def hits(query: str) -> list[int]:
        terms = parse(query)
        return [r.server.id for r in rows if matches(r, terms)]

    assert hits("") == [1, 2, 3, 4]
    assert hits("status:failed") == [2]
    assert hits("s:failed,creating") == [2, 3]
    assert hits("status:inflight") == [3]
    assert hits("!status:ready") == [2, 3, 4]
    assert hits("loc:nbg1") == [3]
    assert hits("cus_002") == [2]
    assert hits("10.0.0.1") == [1]
    assert hits("ip:10.0.0.3 status:creating") == [3]
    assert hits("id:4") == [4]
    assert hits("nothing-matches") == []
    assert hits("unknown:key") == []  # free text "unknown:key"


def test_health_terms_match_ready_servers_only() -> None:
    rows = [
        row(1, health="healthy"),
        row(2, health="degraded", health_reason="disk 95% full"),
        row(3, health="unhealthy", health_reason="bot token revoked"),
        row(4, health="unknown"),
        row(5, "failed", health="unhealthy"),  # its health no longer counts
        row(6, "creating"),
    ]

    def hits(query: str) -> list[int]:
        terms = parse(query)
        return [r.server.id for r in rows if matches(r, terms)]

    assert hits("health:unhealthy") == [3]
    assert hits("h:healthy,unknown") == [1, 4]
    assert hits("health:attention") == [2, 3]
    assert hits("!health:healthy status:ready") == [2, 3, 4]
    assert hits("revoked") == [3]
    assert hits("disk") == [2]


def test_quick_filters_replace_the_term_of_their_key() -> None:
    assert with_quick_term("cus_1 status:ready", "status:failed") == "status:failed cus_1"
    assert with_quick_term("s:ready loc:fsn1", None) == "loc:fsn1"
    both = with_quick_term("status:ready", "health:unhealthy")
    assert both == "health:unhealthy status:ready"
    assert with_quick_term(both, "h:attention") == "h:attention status:ready"
    assert with_quick_term(both + " cus_1", None) == "cus_1"
    assert wants_deleted(parse("status:deleted"))
    assert not wants_deleted(parse("!status:deleted"))
