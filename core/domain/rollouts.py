"""Rollouts of a Rachel8 release across the fleet, as pure decisions (no I/O).

A rollout moves every ready server to a release in waves: a canary of a few
servers, then cumulative shares of the fleet (`"canary,10%,50%,100%"`). The
order is stable for a rollout and spread across locations, so every wave spans
them. At most `max_in_flight` servers update at once; each passes a health gate
(`core.domain.rollout_gate`); a wave that is done soaks for `soak_seconds`
before the next one starts. The halt rule: any failure in the canary, or a
wave whose failed share is above `halt_share`. A halted rollout rolls back
every server it switched.

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

The soak judges health too: while a rollout is running or paused
(`WATCHING_STATES`) the driver judges every `updated` server again at each
tick (`core.domain.rollout_gate.judge_soak`, the gate's health rule). A server
that turns unhealthy, degraded or silent after its gate, in its wave's soak or
in any later wave, is evidence against the release: it fails (`updated ->
failed`), is rolled back, and counts as a failure of its own wave, so the halt
rule (`halt_reason`) looks at every wave up to the current one. Such a server
keeps its update claim from its update until its rollout ends (completed,
aborted, rolled back) or it is rolled back, so health repair never races the
rollout that will roll it back; ending the rollout gives the claims back.

The driver (`jobs.rollout`) moves targets pending -> updating, judges the
gates (gating -> updated | failed, rolling_back -> rolled_back |
rollback_failed) and starts rollbacks; the update and rollback jobs
(`jobs.update`) do the rest. A target is `switched` while its server runs the
target commit because of it (`RolloutTarget.switched_at`): a failed switched
target is rolled back at once.

The waves (`parse_waves`, `plan`):
`core.domain.rollout_waves`. `decide` says what the driver (`jobs.rollout`)
does next from a `RolloutView` of the rollout as stored; the store
(`core.domain.rollout_store`) applies it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
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


# --- decisions -----------------------------------------------------------------


@dataclass(frozen=True)
class TargetView:
    """A rollout target as the driver sees it.

    Attributes:
        since: when its current job was queued (`started_at` while updating,
            `rollback_at` while rolling back), for the restart-safety timeout.
    """

    id: int
    wave: int
    position: int
    state: TargetState
    switched: bool
    since: datetime | None = None


@dataclass(frozen=True)
class RolloutView:
    """A rollout as stored, with its targets (the input of `decide`)."""

    state: RolloutState
    wave: int
    wave_count: int
    soak_until: datetime | None
    soak_seconds: float
    max_in_flight: int
    halt_share: float
    targets: tuple[TargetView, ...]
    #: A job whose target stayed updating or rolling back this long is queued again.
    stuck_after_seconds: float = 600.0


@dataclass(frozen=True)
class StartUpdate:
    """Move a pending target to updating and queue its update."""

    target_id: int


@dataclass(frozen=True)
class RequeueUpdate:
    """Queue the update of a target stuck in updating again (a worker died with it)."""

    target_id: int


@dataclass(frozen=True)
class StartRollback:
    """Move a switched target to rolling_back and queue its rollback."""

    target_id: int


@dataclass(frozen=True)
class RequeueRollback:
    """Queue the rollback of a target stuck in rolling_back again."""

    target_id: int


@dataclass(frozen=True)
class Skip:
    """A pending target will not be updated."""

    target_id: int
    reason: str


@dataclass(frozen=True)
class BeginSoak:
    """The current wave is done and within the halt rule: soak until `until`."""

    until: datetime


@dataclass(frozen=True)
class EnterWave:
    """The soak is over: the next wave begins."""

    wave: int


@dataclass(frozen=True)
class ChangeState:
    """The rollout moves to another state."""

    to: RolloutState
    reason: str | None = None


Action = (
    StartUpdate
    | RequeueUpdate
    | StartRollback
    | RequeueRollback
    | Skip
    | BeginSoak
    | EnterWave
    | ChangeState
)


def halt_reason(view: RolloutView) -> str | None:
    """Why the rollout halts, or None: the halt rule, for every wave up to the current one.

    The canary halts at its first failure. A later wave halts as soon as its
    failed share is above `halt_share`: skipped servers count in neither the
    failures nor the share's denominator, and since pending servers can only
    add to both or be skipped, a share above the threshold now stays above it.
    A wave that passed is judged again: its servers are watched after their
    gates (`judge_soak`), and one that fails later is a failure of its wave.
    """
    for number in range(view.wave + 1):
        why = _wave_halts(view, number)
        if why is not None:
            return why
    return None


def _wave_halts(view: RolloutView, number: int) -> str | None:
    """Why wave `number` halts the rollout, or None."""
    wave = [t for t in view.targets if t.wave == number]
    failed = sum(1 for t in wave if t.state in FAILED_TARGETS)
    counted = sum(1 for t in wave if t.state != TargetState.SKIPPED)
    if not failed:
        return None
    if number == 0:
        return f"the canary failed: {failed} of {counted} server(s) failed their update"
    share = failed / counted
    if share > view.halt_share:
        return (
            f"wave {number} failed: {failed} of {counted} servers ({share:.0%}) failed, "
            f"above the halt share {view.halt_share:.0%}"
        )
    return None


def _restarts(view: RolloutView, now: datetime) -> list[Action]:
    """Re-queue the jobs of targets stuck in flight (their worker died; jobs are idempotent)."""
    limit = timedelta(seconds=view.stuck_after_seconds)
    actions: list[Action] = []
    for t in view.targets:
        if t.since is None or now - t.since < limit:
            continue
        if t.state == TargetState.UPDATING:
            actions.append(RequeueUpdate(t.id))
        elif t.state == TargetState.ROLLING_BACK:
            actions.append(RequeueRollback(t.id))
    return actions


def _rollbacks(view: RolloutView, room: int, *, everything: bool) -> list[StartRollback]:
    """Roll back the switched servers whose update failed, or (`everything`) all of them.

    A gating server is in flight already, so rolling it back takes no room; the
    others take what `room` leaves.
    """
    chosen = [
        t
        for t in view.targets
        if (t.state == TargetState.FAILED and t.switched)
        or (everything and t.state in (TargetState.UPDATED, TargetState.GATING))
    ]
    gating = [t for t in chosen if t.state == TargetState.GATING]
    others = sorted((t for t in chosen if t.state != TargetState.GATING), key=_position)
    return [StartRollback(t.id) for t in sorted(gating + others[:room], key=_position)]


def _position(target: TargetView) -> int:
    return target.position


def _room(view: RolloutView) -> int:
    in_flight = sum(1 for t in view.targets if t.state in IN_FLIGHT_TARGETS)
    return max(0, view.max_in_flight - in_flight)


def _progress(view: RolloutView, now: datetime, room: int) -> list[Action]:
    """A running rollout: start what the limit allows, soak, move to the next wave."""
    wave = [t for t in view.targets if t.wave == view.wave]
    if any(t.state not in DONE_TARGETS for t in wave):
        pending = sorted((t for t in wave if t.state == TargetState.PENDING), key=_position)
        return [StartUpdate(t.id) for t in pending[:room]]
    # A wave that updated no server (every one skipped) has nothing to soak.
    updated = any(t.state == TargetState.UPDATED for t in wave)
    if view.soak_until is None:
        if view.soak_seconds > 0 and updated:
            return [BeginSoak(now + timedelta(seconds=view.soak_seconds))]
    elif now < view.soak_until:
        return []
    if view.wave + 1 < view.wave_count:
        return [EnterWave(view.wave + 1)]
    return [ChangeState(RolloutState.COMPLETED)]


def _wind_down(view: RolloutView, why: str, room: int) -> list[Action]:
    """Skip what has not started; roll back every switched server (within the limit)."""
    actions: list[Action] = [
        Skip(t.id, why) for t in view.targets if t.state == TargetState.PENDING
    ]
    actions += _rollbacks(view, room, everything=True)
    if not actions and all(t.state not in IN_FLIGHT_TARGETS for t in view.targets):
        return [ChangeState(RolloutState.ROLLED_BACK)]  # settled: every switched server is back
    return actions


def decide(view: RolloutView, now: datetime) -> list[Action]:
    """What the driver does next with the rollout as stored.

    Never more than `max_in_flight` targets in flight (updating, gating or
    rolling back) once the actions are applied; rollbacks come before updates.
    A `ChangeState` or `EnterWave` comes alone: the driver applies it and
    decides again on the new state.
    """
    state = view.state
    if state == RolloutState.PLANNED:
        return [ChangeState(RolloutState.RUNNING)]
    if state in (RolloutState.RUNNING, RolloutState.PAUSED):
        why = halt_reason(view)
        if why is not None:
            return [ChangeState(RolloutState.HALTED, why)]
    actions = _restarts(view, now)
    room = _room(view)
    if state in (RolloutState.HALTED, RolloutState.ROLLING_BACK):
        why = "the rollout halted" if state == RolloutState.HALTED else "the rollout is rolled back"
        return _alone(actions, _wind_down(view, why, room))
    if state in (RolloutState.COMPLETED, RolloutState.ROLLED_BACK):
        return actions  # only stuck jobs are looked after
    # A server whose update failed after its switch goes back at once, whatever
    # the rollout does; a paused or aborted rollout starts nothing else.
    rollbacks = _rollbacks(view, room, everything=False)  # failed ones: never gating
    actions += rollbacks
    if state != RolloutState.RUNNING:
        return actions
    return _alone(actions, _progress(view, now, room - len(rollbacks)))


def _alone(actions: list[Action], more: list[Action]) -> list[Action]:
    """`actions` then `more`; a state or wave change in `more` waits for `actions` to be done."""
    if any(isinstance(a, (ChangeState, EnterWave)) for a in more):
        return actions or more
    return actions + more
