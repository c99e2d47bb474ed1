"""The fleet summary: percentiles and the SLA."""

from __future__ import annotations

from core.domain.fleet import percentile, summarize


def test_percentiles_and_sla() -> None:
    assert percentile([], 50) is None
    assert percentile([10, 20, 30, 40], 50) == 25
    assert percentile([5], 95) == 5
    stats = summarize([30, 60, 90, 130], 120)
    assert stats.count == 4 and stats.sla_hit_rate == 0.75
    assert stats.p50 == 75
