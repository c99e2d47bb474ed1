"""The warm pool and image families of `/metrics` (pure rendering, parsed back)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.domain.costs import IdleCost
from core.domain.exposition import Exposition
from core.domain.pool_metrics import PoolSnapshot, render_pool


def test_pool_states_idle_cost_and_snapshot_storage() -> None:
    out = Exposition()
    render_pool(out, PoolSnapshot({"warm": 2, "booting": 1}, IdleCost(3, 1, 14.6), 9.5, 0.11))
    found = {}
    for family in text_string_to_metric_families(out.text()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert found[("rachel_cloud_pool_servers", (("state", "warm"),))] == 2
    assert found[("rachel_cloud_pool_servers", (("state", "booting"),))] == 1
    cost = "rachel_cloud_pool_idle_cost_eur"
    assert found[(cost, (("period", "month"),))] == pytest.approx(14.6)
    assert found[(cost, (("period", "hour"),))] == pytest.approx(0.02)
    assert found[("rachel_cloud_pool_unpriced_servers", ())] == 1
    assert found[("rachel_cloud_snapshot_storage_gb", ())] == 9.5
    assert found[("rachel_cloud_snapshot_storage_cost_eur_month", ())] == pytest.approx(0.11)
