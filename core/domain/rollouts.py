"""Rollouts of a Rachel8 release across the fleet, as pure decisions (no I/O).

A rollout moves every ready server to a release in waves: a canary of a few
servers, then cumulative shares of the fleet (`"canary,10%,50%,100%"`). The
order is stable for a rollout and spread across locations, so every wave spans
them. At most `max_in_flight` servers update at once; each passes a health gate
(`core.domain.rollout_gate`); a wave that is done soaks for `soak_seconds`
before the next one starts. The halt rule: any failure in the canary, or a
wave whose failed share is above `halt_share`. A halted rollout rolls back
every server it switched. The states of a rollout and of each of its
servers, and the moves between them: `core.domain.rollout_states`.

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

from dataclasses import dataclass
from datetime import datetime, timedelta

from core.domain.rollout_states import (
    DONE_TARGETS,
    FAILED_TARGETS,
    IN_FLIGHT_TARGETS,
    RolloutState,
    TargetState,
)


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
