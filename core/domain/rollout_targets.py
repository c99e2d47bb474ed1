"""The states of one server in a rollout (`core.domain.rollouts`), as pure data.

```
pending -> updating -> gating -> updated
pending | updating -> skipped           (not ready, not healthy, claimed, deprovisioned)
updating | gating -> failed             (prepare or switch failed; the gate failed)
gating | updated | failed -> rolling_back -> rolled_back | rollback_failed
```

The driver (`jobs.rollout`) moves targets pending -> updating and judges the
gate (gating -> updated | failed); the update and rollback jobs (`jobs.update`)
do the rest. A target is `switched` while its server runs the target commit
because of it (`RolloutTarget.switched_at` set): a failed switched target is
rolled back.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class TargetState(StrEnum):
    """What became of one server of a rollout."""

    PENDING = "pending"
    UPDATING = "updating"  # its update job is queued or running (prepare, switch)
    GATING = "gating"  # switched; the driver judges its heartbeats
    UPDATED = "updated"
    FAILED = "failed"
    SKIPPED = "skipped"  # not updated, and not a failure (not ready, deprovisioned, ...)
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


TARGET_TRANSITIONS: Mapping[TargetState, frozenset[TargetState]] = {
    TargetState.PENDING: frozenset({TargetState.UPDATING, TargetState.SKIPPED}),
    # Skipped: the update job found the server not ready, not healthy, or claimed.
    TargetState.UPDATING: frozenset({TargetState.GATING, TargetState.FAILED, TargetState.SKIPPED}),
    TargetState.GATING: frozenset(
        {TargetState.UPDATED, TargetState.FAILED, TargetState.ROLLING_BACK}
    ),
    TargetState.UPDATED: frozenset({TargetState.ROLLING_BACK}),
    TargetState.FAILED: frozenset({TargetState.ROLLING_BACK}),
    TargetState.ROLLING_BACK: frozenset({TargetState.ROLLED_BACK, TargetState.ROLLBACK_FAILED}),
    TargetState.ROLLBACK_FAILED: frozenset({TargetState.ROLLING_BACK}),
    TargetState.SKIPPED: frozenset(),
    TargetState.ROLLED_BACK: frozenset(),
}


def target_transition_allowed(source: TargetState | str, target: TargetState | str) -> bool:
    """Whether a rollout target may go from `source` to `target`."""
    try:
        return TargetState(target) in TARGET_TRANSITIONS[TargetState(source)]
    except ValueError:
        return False


#: A job works on the target (its update, its rollback): it counts against max_in_flight.
IN_FLIGHT_TARGETS = frozenset({TargetState.UPDATING, TargetState.GATING, TargetState.ROLLING_BACK})
#: Counted as failures by the halt rule: a rollout that is running or paused only
#: rolls back a server whose own update failed.
FAILED_TARGETS = frozenset(
    {
        TargetState.FAILED,
        TargetState.ROLLING_BACK,
        TargetState.ROLLED_BACK,
        TargetState.ROLLBACK_FAILED,
    }
)
#: Nothing more happens to it in its wave.
DONE_TARGETS = frozenset(
    {
        TargetState.UPDATED,
        TargetState.FAILED,
        TargetState.SKIPPED,
        TargetState.ROLLED_BACK,
        TargetState.ROLLBACK_FAILED,
    }
)
