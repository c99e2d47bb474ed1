"""The states of a rollout and of each of its servers, and the moves between them.

Apart from the decisions (`core.domain.rollouts`) because everything that reads
or writes a rollout needs them (the store, the jobs, the TUI, the CLI), most of
it without the decisions; the store checks every move of a rollout against
these tables (`check_rollout_transition`). `RolloutError` is what a rollout
request that cannot be honoured raises; `NO_WAVE` the wave of a target in none.

A rollout (`RolloutState`, `ROLLOUT_TRANSITIONS`):

```
planned -> running <-> paused
running | paused -> halted -> rolled_back          (the switched servers rolled back)
running -> completed                               (the fleet's current release is the target)
planned | running | paused | halted -> aborted     (nothing more is started)
paused | halted | aborted -> rolling_back -> rolled_back   (an operator's rollback)
```

Per server (`TargetState`, `TARGET_TRANSITIONS`):

```
pending -> updating -> gating -> updated
pending | updating | gating -> skipped  (not ready, not healthy, claimed, deprovisioned)
updating | gating -> failed             (prepare or switch failed; the gate failed)
updated -> failed                       (unhealthy after its gate, while the rollout watches)
gating | updated | failed -> rolling_back -> rolled_back | rollback_failed
```

`LIVE_STATES` (at most one rollout at a time), `WATCHING_STATES` (the rollout
judges its updated servers' health and holds their claims) and `ENDED_STATES`
(the claims are given back) group the rollout's states; `IN_FLIGHT_TARGETS`,
`FAILED_TARGETS` and `DONE_TARGETS` the targets' ones, as the decisions count
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from core.errors import RachelError

#: The wave of a target that is in none: skipped when the rollout was planned.
NO_WAVE = -1


class RolloutError(RachelError):
    """A rollout request that cannot be honoured: bad waves, a second rollout, nothing to do."""

    code = "rollout_error"


class RolloutState(StrEnum):
    """Where a rollout is."""

    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"
    COMPLETED = "completed"
    ABORTED = "aborted"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


#: At most one rollout is in one of these at a time.
LIVE_STATES: frozenset[RolloutState] = frozenset(
    {
        RolloutState.PLANNED,
        RolloutState.RUNNING,
        RolloutState.PAUSED,
        RolloutState.HALTED,
        RolloutState.ROLLING_BACK,
    }
)

ROLLOUT_TRANSITIONS: Mapping[RolloutState, frozenset[RolloutState]] = {
    RolloutState.PLANNED: frozenset(
        {RolloutState.RUNNING, RolloutState.PAUSED, RolloutState.ABORTED}
    ),
    RolloutState.RUNNING: frozenset(
        {RolloutState.PAUSED, RolloutState.HALTED, RolloutState.COMPLETED, RolloutState.ABORTED}
    ),
    RolloutState.PAUSED: frozenset(
        {
            RolloutState.RUNNING,
            RolloutState.HALTED,
            RolloutState.ABORTED,
            RolloutState.ROLLING_BACK,
        }
    ),
    RolloutState.HALTED: frozenset(
        {RolloutState.ROLLED_BACK, RolloutState.ROLLING_BACK, RolloutState.ABORTED}
    ),
    # An aborted rollout leaves its updated servers as they are, until an operator rolls back.
    RolloutState.ABORTED: frozenset({RolloutState.ROLLING_BACK}),
    RolloutState.ROLLING_BACK: frozenset({RolloutState.ROLLED_BACK}),
    RolloutState.COMPLETED: frozenset(),
    RolloutState.ROLLED_BACK: frozenset(),
}


#: The rollout judges its updated servers' health (and holds their claims) in these.
WATCHING_STATES: frozenset[RolloutState] = frozenset({RolloutState.RUNNING, RolloutState.PAUSED})
#: A rollout in one of these has ended: its updated servers' claims are given back.
ENDED_STATES: frozenset[RolloutState] = frozenset(
    {RolloutState.COMPLETED, RolloutState.ABORTED, RolloutState.ROLLED_BACK}
)


def rollout_transition_allowed(source: RolloutState | str, target: RolloutState | str) -> bool:
    """Whether a rollout may go from `source` to `target`."""
    try:
        return RolloutState(target) in ROLLOUT_TRANSITIONS[RolloutState(source)]
    except ValueError:
        return False


def check_rollout_transition(source: RolloutState | str, target: RolloutState | str) -> None:
    """Like `rollout_transition_allowed`, but raises.

    Raises:
        RolloutError: code `invalid_rollout_transition`.
    """
    if not rollout_transition_allowed(source, target):
        raise RolloutError(
            f"a rollout cannot go from {source} to {target}", code="invalid_rollout_transition"
        )


class TargetState(StrEnum):
    """What became of one server of a rollout."""

    PENDING = "pending"
    UPDATING = "updating"  # its update job is queued or running (prepare, switch)
    GATING = "gating"  # switched; the driver judges its heartbeats
    UPDATED = "updated"  # passed its gate; judged again while the rollout watches
    FAILED = "failed"
    SKIPPED = "skipped"  # not updated, and not a failure (not ready, deprovisioned, ...)
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


TARGET_TRANSITIONS: Mapping[TargetState, frozenset[TargetState]] = {
    TargetState.PENDING: frozenset({TargetState.UPDATING, TargetState.SKIPPED}),
    # Skipped: the update job found the server not ready, not healthy, or claimed.
    TargetState.UPDATING: frozenset({TargetState.GATING, TargetState.FAILED, TargetState.SKIPPED}),
    # Skipped: the server left ready (deprovisioned) during its gate.
    TargetState.GATING: frozenset(
        {TargetState.UPDATED, TargetState.FAILED, TargetState.SKIPPED, TargetState.ROLLING_BACK}
    ),
    # Failed: unhealthy after its gate, while the rollout watches it (`judge_soak`).
    TargetState.UPDATED: frozenset({TargetState.ROLLING_BACK, TargetState.FAILED}),
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
