"""The rollout driver: one tick moves a rollout as far as it can go now.

`advance_rollout(rollout_id)` is queued after every operator action
(`jobs.enqueue.enqueue_rollout_tick`) and by the update and rollback jobs when
a target finishes; `advance_rollouts` (cron, every RACHEL_ROLLOUT_INTERVAL)
ticks every rollout with work left, so a lost tick costs seconds. A tick:

1. judges the gate of every `gating` target and of every switched-back
   `rolling_back` one (`core.domain.rollout_gate`, from the servers' latest
   heartbeats); a server no longer ready is finished without its heartbeats;
2. asks `core.domain.rollouts.decide` what to do, and applies it through
   `core.domain.rollout_steps` (compare-and-sets), queueing each update or
   rollback whose write took effect (`jobs.update`);
3. decides again after a state or wave change, until there is nothing to do.

All state lives in the database: a worker killed mid-tick leaves nothing a
next tick cannot pick up, and a job lost with its worker is queued again once
its target has not moved for RACHEL_ROLLOUT_STUCK_AFTER.
"""

from __future__ import annotations

import contextlib
import logging

import redis

from core.domain import rollout_steps as steps
from core.domain.health import HealthPolicy
from core.domain.heartbeats import HeartbeatStore
from core.domain.rollout_gate import judge, judge_rollback
from core.domain.rollout_metrics import count_outcome
from core.domain.rollout_steps import Loaded
from core.domain.rollouts import (
    IN_FLIGHT_TARGETS,
    LIVE_STATES,
    Action,
    BeginSoak,
    ChangeState,
    EnterWave,
    RequeueRollback,
    RequeueUpdate,
    RolloutState,
    Skip,
    StartRollback,
    StartUpdate,
    TargetState,
    decide,
)
from core.store.db import connection
from core.store.models import Rollout, RolloutTarget, Server
from jobs.context import JobContext, context
from jobs.enqueue import ROLLOUT_TICK_FLAG
from jobs.taskrun import task_run
from jobs.update import enqueue_rollback, enqueue_update

log = logging.getLogger(__name__)

#: Decisions of one tick at most (each state or wave change is one; a rollout has few).
MAX_ROUNDS = 8
NOTHING = "nothing to do"


def advance_rollout(rollout_id: int) -> str:
    """RQ job: move the rollout as far as it can go now; what was done."""
    ctx = context()
    with contextlib.suppress(redis.RedisError):
        # Cleared before reading: a tick asked for from now on queues a new job.
        ctx.redis.delete(ROLLOUT_TICK_FLAG.format(rollout_id))
    with connection():
        return _advance(ctx, rollout_id)


def advance_rollouts() -> str:
    """RQ job (cron): tick every rollout with work left (live, or with a job in flight)."""
    ctx = context()
    with task_run(ctx.redis, "rollout", record_event=False) as summary:
        if summary is None:
            return "skipped: another run in progress"
        with connection():
            live = Rollout.select(Rollout.id).where(
                Rollout.state.in_([s.value for s in LIVE_STATES])
            )
            busy = RolloutTarget.select(RolloutTarget.rollout).where(
                RolloutTarget.state.in_([s.value for s in IN_FLIGHT_TARGETS])
            )
            ids = sorted({r.id for r in live} | {t.rollout_id for t in busy})
            for rollout_id in ids:
                summary.found["rollout"] += 1
                try:
                    did = _advance(ctx, rollout_id)
                    if did != NOTHING:
                        summary.acted["tick"] += 1
                        summary.details.append(f"rollout {rollout_id}: {did}")
                except Exception:
                    summary.errors += 1
                    log.exception("rollout %s: the tick failed; the next one retries", rollout_id)
        return summary.line()


def _advance(ctx: JobContext, rollout_id: int) -> str:
    done: list[str] = []
    for _ in range(MAX_ROUNDS):
        loaded = steps.load(rollout_id)
        if loaded is None:
            return f"rollout {rollout_id}: no such rollout"
        if _judge_gates(ctx, loaded):
            done.append("gates judged")
            loaded = steps.load(rollout_id)
            assert loaded is not None
        actions = decide(loaded.view(ctx.settings.rollout_stuck_seconds), ctx.clock.now())
        if not actions:
            break
        done.extend(_apply(ctx, loaded, action) for action in actions)
        if not any(isinstance(a, (ChangeState, EnterWave)) for a in actions):
            break
    applied = [d for d in done if d]
    return "; ".join(applied) if applied else NOTHING


def _judge_gates(ctx: JobContext, loaded: Loaded) -> bool:
    """Finish the gates that are over; True when any target moved."""
    judged = [
        t
        for t in loaded.targets.values()
        if t.state == TargetState.GATING
        or (t.state == TargetState.ROLLING_BACK and t.rollback_at is not None)
    ]
    if not judged:
        return False
    servers = {
        s.id: s
        for s in Server.select(Server.id, Server.status, Server.rachel8_commit).where(
            Server.id.in_([t.server_id for t in judged])
        )
    }
    latest = HeartbeatStore(ctx.redis).latest([t.server_id for t in judged])
    policy = HealthPolicy.from_settings(ctx.settings)
    now = ctx.clock.now()
    moved = False
    for t in judged:
        server = servers.get(t.server_id)
        gone = server is None or server.status != "ready"
        status = server.status if server is not None else "gone"
        if t.state == TargetState.GATING:
            if gone:
                why = f"the server left ready ({status}) during its gate"
                moved |= steps.finish_gate(t, TargetState.SKIPPED, why, ctx.clock)
                continue
            gate = judge(
                latest.get(t.server_id),
                commit=t.to_commit,
                switched_at=t.switched_at or now,  # set with gating (jobs.update)
                gate_seconds=loaded.rollout.gate_seconds,
                now=now,
                policy=policy,
            )
            if gate.waiting:
                continue
            to = TargetState.UPDATED if gate.passed else TargetState.FAILED
            if steps.finish_gate(t, to, gate.reason, ctx.clock):
                moved = True
                count_outcome(ctx.redis, "update", "gate_passed" if gate.passed else "gate_failed")
        else:
            if gone:
                why = f"nothing to roll back: the server left ready ({status})"
                moved |= steps.finish_rollback(t, TargetState.ROLLED_BACK, why, ctx.clock)
                continue
            gate = judge_rollback(
                latest.get(t.server_id),
                from_commit=t.from_commit or "",
                row_commit=server.rachel8_commit if server is not None else None,
                rollback_at=t.rollback_at,
                now=now,
                policy=policy,
            )
            if gate.waiting:
                continue
            to = TargetState.ROLLED_BACK if gate.passed else TargetState.ROLLBACK_FAILED
            if steps.finish_rollback(t, to, gate.reason, ctx.clock):
                moved = True
                count_outcome(
                    ctx.redis, "rollback", "rolled_back" if gate.passed else "rollback_failed"
                )
                if not gate.passed:
                    log.error(
                        "server %s: rollout %s: the rollback to %s failed its check: %s; "
                        "the server stays as it is for an operator",
                        t.server_id, t.rollout_id, t.from_commit, gate.reason,
                    )  # fmt: skip
    return moved


def _apply(ctx: JobContext, loaded: Loaded, action: Action) -> str:
    """Apply one action; what was done ('' when another tick did it first)."""
    clock = ctx.clock
    if isinstance(action, (StartUpdate, RequeueUpdate, StartRollback, RequeueRollback, Skip)):
        return _apply_to_target(ctx, loaded, action)
    if isinstance(action, BeginSoak):
        return "soaking" if steps.begin_soak(loaded, action.until, clock) else ""
    if isinstance(action, EnterWave):
        return f"wave {action.wave}" if steps.enter_wave(loaded, action.wave, clock) else ""
    if not steps.change(loaded, action.to, action.reason, clock):
        return ""
    if action.to == RolloutState.HALTED:
        log.warning("rollout %s halted: %s", loaded.rollout.id, action.reason)
    return f"rollout {loaded.rollout.id} {action.to}"


def _apply_to_target(
    ctx: JobContext,
    loaded: Loaded,
    action: StartUpdate | RequeueUpdate | StartRollback | RequeueRollback | Skip,
) -> str:
    clock = ctx.clock
    target = loaded.targets[action.target_id]
    if isinstance(action, Skip):
        done = steps.skip(target, action.reason, clock)
        return f"skipped server {target.server_id}" if done else ""
    if isinstance(action, StartUpdate):
        moved = steps.start_update(target, clock)
    elif isinstance(action, RequeueUpdate):
        moved = steps.requeue(target, target.started_at, clock)
    elif isinstance(action, StartRollback):
        moved = steps.start_rollback(target, _rollback_reason(loaded, target), clock)
    else:
        moved = steps.requeue(target, target.rollback_started_at, clock)
    return _queued(ctx, target, moved, update=isinstance(action, (StartUpdate, RequeueUpdate)))


def _rollback_reason(loaded: Loaded, target: RolloutTarget) -> str:
    if target.state == TargetState.FAILED:
        return f"its update failed ({target.reason})"
    return loaded.rollout.reason or f"the rollout is {loaded.rollout.state}"


def _queued(ctx: JobContext, target: RolloutTarget, moved: bool, *, update: bool) -> str:
    """Queue the target's update or rollback when this tick moved it."""
    if not moved:
        return ""
    what = "update" if update else "rollback"
    try:
        (enqueue_update if update else enqueue_rollback)(ctx.redis, target.id)
    except redis.RedisError as exc:
        # The target's row says it is due: once RACHEL_ROLLOUT_STUCK_AFTER has
        # passed, a tick queues it again.
        log.warning(
            "server %s: rollout %s: could not queue its %s (%s); a later tick will",
            target.server_id, target.rollout_id, what, exc,
        )  # fmt: skip
        return ""
    return f"{what} of server {target.server_id} queued"
