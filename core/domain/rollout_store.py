"""Rollouts in the database: starting one, and the operators' pause, resume, abort, rollback.

At most one rollout is live (`LIVE_STATES`) at a time. That is enforced in the
transaction that starts one, never by a check before it: the transaction
locks the fleet's release row (PostgreSQL: `SELECT ... FOR UPDATE`; SQLite:
the write lock taken by `BEGIN IMMEDIATE`), then looks for a live rollout,
then inserts. A rollback of an aborted rollout makes it live again, under the
same lock.

Every state change is a compare-and-set (`UPDATE ... WHERE id=? AND
state=?`) with its fleet Event (kind `rollout`, no server) in the same
transaction. The driver's own steps are `core.domain.rollout_steps`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import peewee

from core.domain import releases
from core.domain.lifecycle import validate_actor
from core.domain.releases import short
from core.domain.rollout_claims import release_watched_claims
from core.domain.rollout_states import (
    ENDED_STATES,
    LIVE_STATES,
    NO_WAVE,
    ROLLOUT_TRANSITIONS,
    RolloutError,
    RolloutState,
    TargetState,
    check_rollout_transition,
)
from core.domain.rollout_waves import Candidate, Waves, plan
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.store.db import connection, write_transaction
from core.store.models import Event, FleetRelease, Release, Rollout, RolloutTarget, Server

log = logging.getLogger(__name__)

#: The Event kind of rollout steps, on the fleet's timeline and on each server's.
EVENT_KIND = "rollout"
_INSERT_BATCH = 200  # rows per INSERT (SQLite's limit on bound variables)


@dataclass(frozen=True)
class RolloutOptions:
    """How a rollout goes: its waves, limits, soak and gate, the halt share."""

    waves: Waves
    max_in_flight: int
    soak_seconds: float
    gate_seconds: float
    halt_share: float

    def check(self) -> None:
        """Raises: RolloutError (`invalid_rollout`) naming the option that is out of range."""
        problems = [
            why
            for bad, why in (
                (self.max_in_flight < 1, "--max-in-flight must be at least 1"),
                (self.soak_seconds < 0, "--soak must not be negative"),
                (self.gate_seconds <= 0, "--gate must be above 0s: every server passes a gate"),
                (not 0 <= self.halt_share < 1, "--halt-share must be from 0 up to (not) 1"),
            )
            if bad
        ]
        if problems:
            raise RolloutError("; ".join(problems), code="invalid_rollout")


def record(rollout_id: int, message: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> None:
    """A fleet Event of kind `rollout` (the caller's transaction, if any)."""
    Event.create(
        server=None, at=clock.now(), kind=EVENT_KIND, message=f"rollout {rollout_id}: {message}",
        actor=actor,
    )  # fmt: skip


def latest() -> Rollout | None:
    """The newest rollout (a live one is always the newest: none starts beside it)."""
    with connection():
        row = Rollout.select().order_by(Rollout.id.desc()).first()
    return row if isinstance(row, Rollout) else None


def _lock_fleet(db: peewee.Database) -> None:
    """Serialise rollout starts and rollbacks (see the module's docstring)."""
    query = FleetRelease.select(FleetRelease.id).where(FleetRelease.id == 1)
    if isinstance(db, peewee.PostgresqlDatabase):
        query = query.for_update()
    query.execute()


def _live() -> Rollout | None:
    row = (
        Rollout.select()
        .where(Rollout.state.in_([s.value for s in LIVE_STATES]))
        .order_by(Rollout.id.desc())
        .first()
    )
    return row if isinstance(row, Rollout) else None


def _targets_rows(
    rollout: Rollout, release: Release, servers: Iterable[Server], waves: Waves
) -> list[dict[str, Any]]:
    """The rollout's targets: the ready servers not on the release, in waves, in the
    rollout's order; then the rest, skipped, saying why."""
    eligible: dict[int, Server] = {}
    skipped: list[dict[str, Any]] = []
    for server in servers:
        if server.status != "ready":
            why = f"not ready ({server.status}) when the rollout was planned"
        elif server.rachel8_commit == release.commit:
            why = f"already runs {short(release.commit)}"
        else:
            eligible[server.id] = server
            continue
        skipped.append(
            _row(rollout, release, server, wave=NO_WAVE, state=TargetState.SKIPPED, reason=why)
        )
    planned = plan([Candidate(s.id, s.location) for s in eligible.values()], waves, rollout.id)
    rows = [
        _row(
            rollout,
            release,
            eligible[i],
            wave=number,
            state=TargetState.PENDING,
            reason=None,
        )
        for number, wave in enumerate(planned)
        for i in wave
    ]
    rows += skipped
    for position, row in enumerate(rows):
        row["position"] = position
    return rows


def _row(
    rollout: Rollout,
    release: Release,
    server: Server,
    *,
    wave: int,
    state: TargetState,
    reason: str | None,
) -> dict[str, Any]:
    return {
        "rollout": rollout.id,
        "server": server.id,
        "wave": wave,
        "position": 0,
        "state": state.value,
        "from_commit": server.rachel8_commit,
        "to_commit": release.commit,
        "reason": reason,
        "finished_at": rollout.created_at if state == TargetState.SKIPPED else None,
    }


def start(
    release: Release,
    options: RolloutOptions,
    actor: str,
    seed_commit: str,
    clock: Clock = SYSTEM_CLOCK,
) -> Rollout:
    """Plan a rollout of `release` to every ready server (it starts at the driver's next tick).

    Raises:
        RolloutError: bad options (`invalid_rollout`), another rollout is live
            (`rollout_live`), or nothing to do (`nothing_to_roll_out`).
    """
    validate_actor(actor)
    options.check()
    fleet = releases.current(seed_commit, clock)  # the row the transaction locks exists
    with connection() as db, write_transaction(db):
        _lock_fleet(db)
        live = _live()
        if live is not None:
            raise RolloutError(
                f"rollout {live.id} is {live.state} (started by {live.created_by}): one rollout "
                "at a time; see `rachel-cloud rollout status`, then resume, abort or roll it back",
                code="rollout_live",
            )
        now = clock.now()
        rollout = Rollout.create(
            release=release.id, state=RolloutState.PLANNED.value, canary=options.waves.canary,
            shares=json.dumps(list(options.waves.shares)), max_in_flight=options.max_in_flight,
            soak_seconds=options.soak_seconds, gate_seconds=options.gate_seconds,
            halt_share=options.halt_share, created_by=actor, created_at=now, updated_at=now,
        )  # fmt: skip
        servers = Server.select().where(Server.status != "deleted").order_by(Server.id)
        rows = _targets_rows(rollout, release, servers, options.waves)
        planned = sum(1 for r in rows if r["wave"] != NO_WAVE)
        if not planned and fleet.id == release.id:
            raise RolloutError(
                f"nothing to roll out: {short(release.commit)} is the fleet's current release "
                "and every ready server runs it",
                code="nothing_to_roll_out",
            )
        for i in range(0, len(rows), _INSERT_BATCH):
            RolloutTarget.insert_many(rows[i : i + _INSERT_BATCH]).execute()
        waves = len({r["wave"] for r in rows if r["wave"] != NO_WAVE})
        record(
            rollout.id,
            f"started for {short(release.commit)}: {planned} server(s) in {waves} wave(s) "
            f"({options.waves.text()}), {len(rows) - planned} skipped; at most "
            f"{options.max_in_flight} in flight, gate {options.gate_seconds:g}s, soak "
            f"{options.soak_seconds:g}s, halt above {options.halt_share:.0%} failed",
            actor,
            clock,
        )
    log.info("rollout %s of %s started by %s", rollout.id, short(release.commit), actor)
    return rollout


def change_state(
    rollout: Rollout,
    to: RolloutState,
    actor: str,
    message: str,
    clock: Clock = SYSTEM_CLOCK,
    **changes: Any,
) -> bool:
    """Move a rollout from its state as read to `to`, with its Event (caller's transaction).

    Returns:
        False when the rollout's state changed meanwhile (nothing written).
    """
    check_rollout_transition(rollout.state, to)
    now = clock.now()
    values: dict[str, Any] = {"state": to.value, "updated_at": now, **changes}
    if to in (RolloutState.COMPLETED, RolloutState.ABORTED, RolloutState.ROLLED_BACK):
        values.setdefault("finished_at", now)
    moved = (
        Rollout.update(values)
        .where((Rollout.id == rollout.id) & (Rollout.state == rollout.state))
        .execute()
    )
    if not moved:
        return False
    if to in ENDED_STATES:
        release_watched_claims(rollout.id)
    record(rollout.id, message, actor, clock)
    log.info("rollout %s: %s -> %s: %s", rollout.id, rollout.state, to, message)
    return True


def _operate(
    allowed: dict[str, str],
    refusal: str,
    actor: str,
    clock: Clock,
    *,
    reason: str | None = None,
) -> tuple[Rollout, RolloutState]:
    """Apply an operator's action to the newest rollout, if its state allows it.

    Args:
        allowed: state the newest rollout may be in -> the state it goes to.
        refusal: what the error says when there is no rollout at all.
    """
    validate_actor(actor)
    with connection() as db, write_transaction(db):
        _lock_fleet(db)
        rollout = Rollout.select().order_by(Rollout.id.desc()).first()
        if rollout is None:
            raise RolloutError(refusal, code="no_rollout")
        to = allowed.get(rollout.state)
        if to is None:
            raise _refusal(rollout, allowed)
        target = RolloutState(to)
        if target == RolloutState.ROLLING_BACK and not _switched(rollout.id):
            raise RolloutError(
                f"nothing to roll back: rollout {rollout.id} switched no server that is still "
                "on its release",
                code="nothing_to_roll_back",
            )
        words = (
            "rolling back every server it switched"
            if target == RolloutState.ROLLING_BACK
            else _VERBS[target]
        )
        message = f"{words} by {actor}" + (f": {reason}" if reason else "")
        changes: dict[str, Any] = {}
        if target in (RolloutState.ABORTED, RolloutState.ROLLING_BACK):
            changes["reason"] = message
            _skip_pending(rollout.id, f"{words} by {actor}", clock)
        change_state(rollout, target, actor, message, clock, **changes)
    return rollout, target


def _refusal(rollout: Rollout, allowed: dict[str, str]) -> RolloutError:
    """Why the newest rollout's state refuses the action."""
    state = RolloutState(rollout.state)
    head = f"rollout {rollout.id} is {state}"
    if RolloutState.ROLLING_BACK.value in allowed.values():
        if state == RolloutState.COMPLETED:
            return RolloutError(
                f"nothing to roll back: rollout {rollout.id} completed and its release is the "
                "fleet's current one; to go back, start a rollout of the previous release",
                code="nothing_to_roll_back",
            )
        if state == RolloutState.ROLLED_BACK:
            return RolloutError(
                f"nothing to roll back: rollout {rollout.id} is rolled back already",
                code="nothing_to_roll_back",
            )
        if state in (RolloutState.RUNNING, RolloutState.PLANNED):
            return RolloutError(
                f"{head}: pause or abort it first, then roll it back", code="rollout_state"
            )
    if state not in LIVE_STATES:
        return RolloutError(
            f"no rollout is in progress (the last one, {rollout.id}, is {state})",
            code="no_rollout",
        )
    verbs = sorted(_VERBS[s] for s in ROLLOUT_TRANSITIONS[state] if s in _VERBS)
    return RolloutError(
        f"{head}: it can be " + " or ".join(verbs) if verbs else f"{head}: wait for it to finish",
        code="rollout_state",
    )


_VERBS = {
    RolloutState.PAUSED: "paused",
    RolloutState.RUNNING: "resumed",
    RolloutState.ABORTED: "aborted",
    RolloutState.ROLLING_BACK: "rolled back",
}


def _switched(rollout_id: int) -> bool:
    """Whether a server of the rollout runs (or is switching to) its release."""
    switched = RolloutTarget.state.in_([TargetState.UPDATED.value, TargetState.GATING.value]) | (
        (RolloutTarget.state == TargetState.FAILED.value) & RolloutTarget.switched_at.is_null(False)
    )
    busy = RolloutTarget.state == TargetState.UPDATING.value
    query = RolloutTarget.select(RolloutTarget.id).where(
        (RolloutTarget.rollout == rollout_id) & (switched | busy)
    )
    return bool(query.exists())


def _skip_pending(rollout_id: int, why: str, clock: Clock) -> int:
    return int(
        RolloutTarget.update(state=TargetState.SKIPPED.value, reason=why, finished_at=clock.now())
        .where(
            (RolloutTarget.rollout == rollout_id)
            & (RolloutTarget.state == TargetState.PENDING.value)
        )
        .execute()
    )


def pause(actor: str, clock: Clock = SYSTEM_CLOCK) -> Rollout:
    """Pause the live rollout: nothing new starts; updates under way finish.

    Raises:
        RolloutError: no rollout, or one that cannot be paused now.
    """
    allowed = {"planned": "paused", "running": "paused"}
    return _operate(allowed, "no rollout to pause", actor, clock)[0]


def resume(actor: str, clock: Clock = SYSTEM_CLOCK) -> Rollout:
    """Resume a paused rollout.

    Raises:
        RolloutError: no rollout, or one that is not paused.
    """
    return _operate({"paused": "running"}, "no rollout to resume", actor, clock)[0]


def abort(actor: str, reason: str | None = None, clock: Clock = SYSTEM_CLOCK) -> Rollout:
    """Abort the live rollout: nothing more starts; updated servers stay as they are.

    Raises:
        RolloutError: no rollout, or one that is finished or rolling back.
    """
    allowed = {s: "aborted" for s in ("planned", "running", "paused", "halted")}
    return _operate(allowed, "no rollout to abort", actor, clock, reason=reason)[0]


def roll_back(actor: str, clock: Clock = SYSTEM_CLOCK) -> Rollout:
    """Roll back every server the newest rollout switched (paused, halted or aborted).

    Raises:
        RolloutError: `nothing_to_roll_back` (no rollout, nothing switched, completed,
            rolled back already) or a state that must change first.
    """
    allowed = {s: "rolling_back" for s in ("paused", "halted", "aborted")}
    return _operate(allowed, "nothing to roll back: no rollout yet", actor, clock)[0]
