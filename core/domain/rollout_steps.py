"""The rollout driver's writes: reading a rollout as a `RolloutView`, applying its actions.

`jobs.rollout` reads a rollout with `load`, judges its gates, asks
`core.domain.rollouts.decide` what to do, and applies each action here. Every
write is a compare-and-set on the state it was decided from, in its own
transaction with its Event, so two ticks running at once (the cron's and one
queued by a finished job) apply each action once; the caller queues a job only
for a write that took effect.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from core.domain import releases
from core.domain.lifecycle import record_event
from core.domain.releases import short
from core.domain.rollout_claims import release_claim
from core.domain.rollout_states import (
    FAILED_TARGETS,
    NO_WAVE,
    WATCHING_STATES,
    RolloutState,
    TargetState,
)
from core.domain.rollout_store import change_state, record
from core.domain.rollouts import RolloutView, TargetView
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.store.db import connection, write_transaction
from core.store.models import Release, Rollout, RolloutTarget

log = logging.getLogger(__name__)

ACTOR = "system"


@dataclass(frozen=True)
class Loaded:
    """A rollout and its targets, as read at the start of a step."""

    rollout: Rollout
    targets: dict[int, RolloutTarget]

    def view(self, stuck_after_seconds: float) -> RolloutView:
        """The rollout as `decide` takes it."""
        r = self.rollout
        waves = {t.wave for t in self.targets.values() if t.wave != NO_WAVE}
        return RolloutView(
            state=RolloutState(r.state),
            wave=r.wave,
            wave_count=max(waves) + 1 if waves else 0,
            soak_until=r.soak_until,
            soak_seconds=r.soak_seconds,
            max_in_flight=r.max_in_flight,
            halt_share=r.halt_share,
            targets=tuple(_target_view(t) for t in self.targets.values()),
            stuck_after_seconds=stuck_after_seconds,
        )


def _target_view(t: RolloutTarget) -> TargetView:
    since = {
        TargetState.UPDATING: t.started_at,
        TargetState.ROLLING_BACK: t.rollback_started_at,
    }.get(TargetState(t.state))
    return TargetView(
        t.id, t.wave, t.position, TargetState(t.state), t.switched_at is not None, since
    )


def load(rollout_id: int) -> Loaded | None:
    """The rollout and its targets (in position order), or None when there is no such rollout."""
    with connection():
        rollout = Rollout.get_or_none(Rollout.id == rollout_id)
        if rollout is None:
            return None
        rows = RolloutTarget.select().where(RolloutTarget.rollout == rollout_id)
        targets = {t.id: t for t in rows.order_by(RolloutTarget.position)}
    return Loaded(rollout, targets)


def _move(
    target: RolloutTarget,
    sources: Collection[TargetState],
    to: TargetState,
    clock: Clock,
    event: str | None,
    **changes: Any,
) -> bool:
    """Compare-and-set a target from one of `sources` to `to`, with a server Event."""
    with connection() as db, write_transaction(db):
        moved = (
            RolloutTarget.update(state=to.value, **changes)
            .where(
                (RolloutTarget.id == target.id)
                & RolloutTarget.state.in_([s.value for s in sources])
            )
            .execute()
        )
        if moved and event:
            record_event(
                target.server_id,
                "rollout",
                f"rollout {target.rollout_id}: {event}",
                actor=ACTOR,
                clock=clock,
            )
    return bool(moved)


def start_update(target: RolloutTarget, clock: Clock = SYSTEM_CLOCK) -> bool:
    """pending -> updating; True when this call did it (the caller queues the update)."""
    return _move(
        target,
        [TargetState.PENDING],
        TargetState.UPDATING,
        clock,
        f"{_wave_name(target.wave)}: updating Rachel8 from {short(target.from_commit)} "
        f"to {short(target.to_commit)}",
        started_at=clock.now(),
    )


def requeue(target: RolloutTarget, since: datetime | None, clock: Clock = SYSTEM_CLOCK) -> bool:
    """Restamp a target stuck updating or rolling back; True when this call did it."""
    column = "started_at" if target.state == TargetState.UPDATING else "rollback_started_at"
    field = getattr(RolloutTarget, column)
    with connection():
        moved = (
            RolloutTarget.update({column: clock.now()})
            .where(
                (RolloutTarget.id == target.id)
                & (RolloutTarget.state == target.state)
                & (field.is_null() if since is None else field == since)
            )
            .execute()
        )
    if moved:
        log.warning(
            "server %s: rollout %s: its %s job looks lost (no progress since %s); queued again",
            target.server_id,
            target.rollout_id,
            "update" if target.state == TargetState.UPDATING else "rollback",
            since,
        )
    return bool(moved)


def start_rollback(target: RolloutTarget, why: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """A switched target -> rolling_back; True when this call did it (the caller queues it)."""
    return _move(
        target,
        [TargetState.UPDATED, TargetState.GATING, TargetState.FAILED],
        TargetState.ROLLING_BACK,
        clock,
        f"rolling back to {short(target.from_commit)}: {why}",
        rollback_started_at=clock.now(),
        rollback_at=None,
    )


def skip(target: RolloutTarget, why: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """pending -> skipped (not a step on the server: no server Event)."""
    return _move(
        target, [TargetState.PENDING], TargetState.SKIPPED, clock, None,
        reason=why, finished_at=clock.now(),
    )  # fmt: skip


def finish_gate(
    target: RolloutTarget, to: TargetState, reason: str, clock: Clock = SYSTEM_CLOCK
) -> bool:
    """A gating target's gate is over: updated (passed), failed, or skipped (left ready).

    A failed target keeps its server's update claim for its rollback; a skipped
    one gives it back. A passed one keeps it while its rollout watches it
    (`WATCHING_STATES`: the soak judges it, and health repair must not act on
    a server the rollout may roll back); ending the rollout gives it back
    (`rollout_store.change_state`), and so does this when the rollout is no
    longer watching. The rollout's row is read locked (PostgreSQL) in the same
    transaction, so a rollout ending meanwhile cannot leave the claim behind.
    """
    event = {
        TargetState.UPDATED: f"gate passed: {reason}",
        TargetState.FAILED: f"gate failed: {reason}",
        TargetState.SKIPPED: f"gate given up: {reason}",
    }[to]
    with connection() as db, write_transaction(db):
        watching = to == TargetState.UPDATED and _watching(db, target.rollout_id)
        done = _move(
            target, [TargetState.GATING], to, clock, event, reason=reason, finished_at=clock.now()
        )
        if done and to != TargetState.FAILED and not watching:
            release_claim(target.server_id, target.id)
    return done


def _watching(db: peewee.Database, rollout_id: int) -> bool:
    """Whether the rollout watches its updated servers now (its row locked on PostgreSQL)."""
    query = Rollout.select(Rollout.state).where(Rollout.id == rollout_id)
    if isinstance(db, peewee.PostgresqlDatabase):
        query = query.for_update()
    row = query.first()
    return row is not None and RolloutState(row.state) in WATCHING_STATES


def fail_soak(target: RolloutTarget, reason: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """An updated target turned unhealthy after its gate: failed (it keeps its claim for
    the rollback the driver starts next); True when this call did it."""
    return _move(
        target,
        [TargetState.UPDATED],
        TargetState.FAILED,
        clock,
        f"failed after its gate ({_wave_name(target.wave)}): {reason}",
        reason=reason,
        finished_at=clock.now(),
    )


def finish_rollback(
    target: RolloutTarget, to: TargetState, reason: str, clock: Clock = SYSTEM_CLOCK
) -> bool:
    """A rolling_back target is done: rolled_back or rollback_failed; the claim is given back."""
    event = (
        f"rolled back to {short(target.from_commit)}: {reason}"
        if to == TargetState.ROLLED_BACK
        else f"rollback failed: {reason}"
    )
    old = target.reason
    kept = f"{old}; {event}" if old and to == TargetState.ROLLED_BACK else event
    done = _move(
        target, [TargetState.ROLLING_BACK], to, clock, event, reason=kept, finished_at=clock.now()
    )
    if done:
        release_claim(target.server_id, target.id)
    return done


def _tally(loaded: Loaded, wave: int) -> str:
    counts: dict[str, int] = {}
    for t in loaded.targets.values():
        if t.wave == wave:
            counts[t.state] = counts.get(t.state, 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no server"


def _wave_name(wave: int) -> str:
    return "the canary" if wave == 0 else f"wave {wave}"


def begin_soak(loaded: Loaded, until: datetime, clock: Clock = SYSTEM_CLOCK) -> bool:
    """The current wave is done: soak until `until` (recorded)."""
    r = loaded.rollout
    seconds = (until - clock.now()).total_seconds()
    with connection() as db, write_transaction(db):
        moved = (
            Rollout.update(soak_until=until, updated_at=clock.now())
            .where(
                (Rollout.id == r.id)
                & (Rollout.wave == r.wave)
                & Rollout.soak_until.is_null()
                & (Rollout.state == RolloutState.RUNNING.value)
            )
            .execute()
        )
        if moved:
            record(
                r.id,
                f"{_wave_name(r.wave)} done ({_tally(loaded, r.wave)}); soaking {seconds:.0f}s",
                ACTOR,
                clock,
            )
    return bool(moved)


def enter_wave(loaded: Loaded, wave: int, clock: Clock = SYSTEM_CLOCK) -> bool:
    """The soak is over: the next wave begins (recorded)."""
    r = loaded.rollout
    size = sum(1 for t in loaded.targets.values() if t.wave == wave)
    with connection() as db, write_transaction(db):
        moved = (
            Rollout.update(wave=wave, soak_until=None, updated_at=clock.now())
            .where(
                (Rollout.id == r.id)
                & (Rollout.wave == wave - 1)
                & (Rollout.state == RolloutState.RUNNING.value)
            )
            .execute()
        )
        if moved:
            record(r.id, f"wave {wave} begins: {size} server(s)", ACTOR, clock)
    return bool(moved)


def _outcome(loaded: Loaded) -> str:
    targets = loaded.targets.values()
    updated = sum(1 for t in targets if t.state == TargetState.UPDATED)
    failed = sum(1 for t in targets if t.state in FAILED_TARGETS)
    back = sum(1 for t in targets if t.state == TargetState.ROLLED_BACK)
    stuck = sum(1 for t in targets if t.state == TargetState.ROLLBACK_FAILED)
    skipped = sum(1 for t in targets if t.state == TargetState.SKIPPED)
    words = [f"{updated} updated", f"{failed} failed", f"{skipped} skipped"]
    if back or stuck:
        words.append(f"{back} rolled back")
    if stuck:
        words.append(f"{stuck} FAILED TO ROLL BACK (operators alerted; see `rollout status`)")
    return ", ".join(words)


def change(
    loaded: Loaded, to: RolloutState, reason: str | None, clock: Clock = SYSTEM_CLOCK
) -> bool:
    """Apply a state change `decide` asked for (completing makes the release current)."""
    r = loaded.rollout
    changes: dict[str, Any] = {}
    if to == RolloutState.RUNNING:
        changes["started_at"] = clock.now()
        message = "running"
    elif to == RolloutState.HALTED:
        changes["reason"] = reason
        message = f"HALTED: {reason}; rolling back every server it switched"
    elif to == RolloutState.COMPLETED:
        message = f"completed: {_outcome(loaded)}"
    else:
        message = f"{to}: {_outcome(loaded)}"
    with connection() as db, write_transaction(db):
        done = change_state(r, to, ACTOR, message, clock, **changes)
        if done and to == RolloutState.COMPLETED:
            release = Release.get_by_id(r.release_id)
            releases.set_current(release, ACTOR, f"rollout {r.id} completed", clock)
    return done
