"""The rollout driver: one tick moves a rollout as far as it can go now.

`advance_rollout(rollout_id)` is queued after every operator action
(`jobs.enqueue.enqueue_rollout_tick`) and by the update and rollback jobs when
a target finishes; `advance_rollouts` (cron, every RACHEL_ROLLOUT_INTERVAL)
ticks every rollout with work left, so a lost tick costs seconds. A tick:

1. judges the gate of every `gating` target and of every switched-back
   `rolling_back` one (`core.domain.rollout_gate`, from the servers' latest
   heartbeats); a server no longer ready is finished without its heartbeats;
   while the rollout runs or is paused it judges every `updated` one again
   (`judge_soak`: the soak, and every later wave, watch health), failing one
   that turned unhealthy after its gate, so `decide` rolls it back and counts
   it against its wave;
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
from dataclasses import dataclass
from datetime import datetime

import redis

from core.domain import rollout_steps as steps
from core.domain.health import HealthPolicy
from core.domain.heartbeats import HeartbeatStore, StoredHeartbeat
from core.domain.rollout_gate import judge, judge_rollback, judge_soak
from core.domain.rollout_metrics import count_outcome
from core.domain.rollout_states import (
    IN_FLIGHT_TARGETS,
    LIVE_STATES,
    WATCHING_STATES,
    RolloutState,
    TargetState,
)
from core.domain.rollout_steps import Loaded
from core.domain.rollouts import (
    Action,
    BeginSoak,
    ChangeState,
    EnterWave,
    RequeueRollback,
    RequeueUpdate,
    Skip,
    StartRollback,
    StartUpdate,
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
    """Finish the gates that are over, and fail the watched servers that turned
    unhealthy after theirs; True when any target moved."""
    watching = RolloutState(loaded.rollout.state) in WATCHING_STATES
    judged = [
        t
        for t in loaded.targets.values()
        if t.state == TargetState.GATING
        or (t.state == TargetState.ROLLING_BACK and t.rollback_at is not None)
        or (watching and t.state == TargetState.UPDATED)
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
    judging = _Judging(ctx, HealthPolicy.from_settings(ctx.settings), ctx.clock.now())
    moved = False
    for t in judged:
        server = servers.get(t.server_id)
        heartbeat = latest.get(t.server_id)
        if t.state == TargetState.GATING:
            moved |= judging.gate(t, server, heartbeat, loaded.rollout.gate_seconds)
        elif t.state == TargetState.UPDATED:
            moved |= judging.soak(t, server, heartbeat)
        else:
            moved |= judging.rollback(t, server, heartbeat)
    return moved


@dataclass(frozen=True)
class _Judging:
    """One tick's judgement of its targets' heartbeats (`core.domain.rollout_gate`)."""

    ctx: JobContext
    policy: HealthPolicy
    now: datetime

    def gate(
        self,
        t: RolloutTarget,
        server: Server | None,
        latest: StoredHeartbeat | None,
        gate_seconds: float,
    ) -> bool:
        """A gating target: updated, failed, skipped (its server left ready), or waiting."""
        if server is None or server.status != "ready":
            why = f"the server left ready ({_status(server)}) during its gate"
            return steps.finish_gate(t, TargetState.SKIPPED, why, self.ctx.clock)
        gate = judge(
            latest,
            commit=t.to_commit,
            switched_at=t.switched_at or self.now,  # set with gating (jobs.update)
            gate_seconds=gate_seconds,
            now=self.now,
            policy=self.policy,
        )
        if gate.waiting:
            return False
        to = TargetState.UPDATED if gate.passed else TargetState.FAILED
        if not steps.finish_gate(t, to, gate.reason, self.ctx.clock):
            return False
        count_outcome(self.ctx.redis, "update", "gate_passed" if gate.passed else "gate_failed")
        return True

    def soak(self, t: RolloutTarget, server: Server | None, latest: StoredHeartbeat | None) -> bool:
        """An updated target, watched: failed when unhealthy after its gate.

        A server no longer ready (deprovisioned, or its customer's new secrets
        being injected) or no longer on the release is not judged: its heartbeats
        are not the release's.
        """
        if server is None or server.status != "ready" or server.rachel8_commit != t.to_commit:
            return False
        soak = judge_soak(
            latest,
            commit=t.to_commit,
            switched_at=t.switched_at or self.now,
            now=self.now,
            policy=self.policy,
        )
        if soak.passed or not steps.fail_soak(t, soak.reason, self.ctx.clock):
            return False
        count_outcome(self.ctx.redis, "update", "soak_failed")
        log.warning(
            "server %s: rollout %s: wave %s: %s; rolling it back",
            t.server_id, t.rollout_id, t.wave, soak.reason,
        )  # fmt: skip
        return True

    def rollback(
        self, t: RolloutTarget, server: Server | None, latest: StoredHeartbeat | None
    ) -> bool:
        """A switched-back target: rolled_back, rollback_failed, or waiting."""
        if server is None or server.status != "ready":
            why = f"nothing to roll back: the server left ready ({_status(server)})"
            return steps.finish_rollback(t, TargetState.ROLLED_BACK, why, self.ctx.clock)
        gate = judge_rollback(
            latest,
            from_commit=t.from_commit or "",
            row_commit=server.rachel8_commit,
            rollback_at=t.rollback_at,
            now=self.now,
            policy=self.policy,
        )
        if gate.waiting:
            return False
        to = TargetState.ROLLED_BACK if gate.passed else TargetState.ROLLBACK_FAILED
        if not steps.finish_rollback(t, to, gate.reason, self.ctx.clock):
            return False
        count_outcome(
            self.ctx.redis, "rollback", "rolled_back" if gate.passed else "rollback_failed"
        )
        if not gate.passed:
            log.error(
                "server %s: rollout %s: the rollback to %s failed its check: %s; "
                "the server stays as it is for an operator",
                t.server_id, t.rollout_id, t.from_commit, gate.reason,
            )  # fmt: skip
        return True


def _status(server: Server | None) -> str:
    return server.status if server is not None else "gone"


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
