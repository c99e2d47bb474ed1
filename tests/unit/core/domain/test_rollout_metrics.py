"""The release and rollout families of `/metrics` (pure rendering)."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from core.domain.exposition import Exposition
from core.domain.rollout_metrics import RolloutSnapshot, render_rollouts

NEW, OLD = "1" * 40, "2" * 40


def samples(snap: RolloutSnapshot) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = Exposition()
    render_rollouts(out, snap)
    found = {}
    for family in text_string_to_metric_families(out.text()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_servers_per_commit_targets_by_state_and_step_outcomes() -> None:
    snap = RolloutSnapshot(
        by_commit={NEW: 3, OLD: 1, None: 1},
        rollout_id=7,
        targets={"updated": 3, "rolled_back": 1, "pending": 0},
        live=True,
        steps={("update", "switched"): 4, ("rollback", "switched_back"): 1},
    )
    found = samples(snap)
    assert found[("rachel_cloud_servers_release", (("commit", NEW),))] == 3
    assert found[("rachel_cloud_servers_release", (("commit", OLD),))] == 1
    assert found[("rachel_cloud_servers_release", (("commit", "unknown"),))] == 1
    assert found[("rachel_cloud_rollout_targets", (("rollout", "7"), ("state", "updated")))] == 3
    assert found[("rachel_cloud_rollout_targets", (("rollout", "7"), ("state", "pending")))] == 0
    assert found[("rachel_cloud_rollout_live", ())] == 1
    steps = "rachel_cloud_rollout_steps_total"
    assert found[(steps, (("kind", "update"), ("outcome", "switched")))] == 4
    assert found[(steps, (("kind", "rollback"), ("outcome", "switched_back")))] == 1


def test_without_any_rollout_only_the_commits_and_a_zero_live_gauge() -> None:
    found = samples(RolloutSnapshot(by_commit={NEW: 2}))
    assert found == {
        ("rachel_cloud_servers_release", (("commit", NEW),)): 2,
        ("rachel_cloud_rollout_live", ()): 0,
    }
