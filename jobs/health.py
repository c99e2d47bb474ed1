"""The health task: every RACHEL_HEALTH_INTERVAL, decide each ready server's health.

One pass (a cron task, locked, any worker):

1. reads the ready servers (one query, plain tuples), every latest heartbeat
   (`HeartbeatStore.all_latest`, one round trip) and the task's memory
   (`core.domain.health_store`, one round trip);
2. decides each server's health (`core.domain.health.decide`, pure);
3. writes only changes, in bulk and compare-and-set (the row's health and
   reason, an Event kind `health` with the states as from/to, a
   `{"type": "health", ...}` message on the events channel);
4. trips or clears the herd guard (`core.domain.herd`), then queues what the
   changes call for: the owner told "down" (not during a herd) or "back"
   (`jobs.notifying`), operators told of what restarts cannot fix;
5. queues an SSH probe for each silent server, and a repair step for each server
   the escalation says to repair (`core.domain.repair`; `jobs.repair` runs them),
   never two for one server, none while the herd guard holds, none for repair
   while RACHEL_REPAIR is false or an operator paused it.

A server a Rachel8 update holds (`jobs.update`) is judged and written like any
other, but its rollout's health gate owns it: it counts in no herd, its owner
is not told, and it is neither probed nor repaired.

With nothing changed a pass costs the three reads and the decisions: no
per-server query, no write but the memos of new heartbeats.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from core.domain.health import (
    HealthPolicy,
    HealthState,
)
from core.domain.health_store import HealthMemory, Recall
from core.domain.heartbeats import HeartbeatStore
from core.domain.herd import (
    Change,
    HerdPolicy,
    HerdState,
    HerdStore,
    assess,
    counting_since,
    held,
)
from core.domain.herd import record as record_fleet_event
from core.domain.repair import (
    STEPS,
    Decision,
    RepairPolicy,
    decide_repair,
    probe_due,
)
from core.platform.logs import server_logger
from core.platform.runs import RunSummary
from core.store.db import connection
from jobs.context import JobContext, context
from jobs.health_fleet import (
    Judged,
    claimed_servers,
    judge_all,
    outdated,
    ready_servers,
)
from jobs.health_writes import (
    alert_operators,
    notify_changes,
    tell_owners_after_herd,
    write_verdicts,
)
from jobs.queues import FINISH, enqueue_step
from jobs.registry import JobFunction
from jobs.taskrun import task_run

log = logging.getLogger(__name__)


def check_health() -> str:
    """RQ job (cron): one health pass over the ready fleet."""
    ctx = context()
    with task_run(ctx.redis, "health", record_event=False) as summary:
        if summary is None:
            return "skipped: already running"
        run(ctx, summary=summary)
        return summary.line()


def run(ctx: JobContext, *, summary: RunSummary | None = None) -> RunSummary:
    """One pass; returns what it found and did."""
    summary = summary if summary is not None else RunSummary("health")
    now = ctx.clock.now()
    with connection():
        servers = ready_servers()
    memory = HealthMemory(ctx.redis)
    latest = HeartbeatStore(ctx.redis).all_latest()
    recall = memory.recall()
    herd, pause = HerdStore(ctx.redis).read()
    was_tripped = herd.tripped
    policy = HealthPolicy.from_settings(ctx.settings)
    judged, memos = judge_all(servers, latest, recall, now, policy)
    applied = write_verdicts(ctx, [j for j in judged if j.changed], now, summary=summary)
    # A server a Rachel8 update holds is its rollout's: its gate judges it, a failure is
    # rolled back, so it counts in no herd, its owner is not told, and nothing repairs it.
    held_ids = _claimed(judged)
    herd = _guard(
        ctx,
        herd,
        judged=[j for j in judged if j.server.id not in held_ids],
        applied=applied,
        now=now,
        summary=summary,
    )
    notify_changes(
        ctx, [j for j in applied if j.server.id not in held_ids], herd_tripped=herd.tripped
    )
    if was_tripped and not herd.tripped:
        tell_owners_after_herd(ctx, judged)
    _plan(
        ctx,
        [j for j in judged if j.server.id not in held_ids],
        recall=recall,
        holding=held(herd, pause),
        herd_tripped=herd.tripped,
        now=now,
        summary=summary,
    )
    ready = {s.id for s in servers}
    known = set(recall.memos) | set(recall.findings) | set(recall.acted)
    memory.save(memos, stale_findings=outdated(judged), forget=known - ready)
    return summary


def _claimed(judged: Sequence[Judged]) -> set[int]:
    """The servers a Rachel8 update holds, read only when some server is not healthy."""
    if all(j.verdict.state not in _ATTENTION for j in judged):
        return set()
    with connection():
        return claimed_servers()


_ATTENTION = (HealthState.UNHEALTHY, HealthState.DEGRADED)


# --- the herd guard -----------------------------------------------------------------


def _guard(
    ctx: JobContext,
    state: HerdState,
    *,
    judged: Sequence[Judged],
    applied: Sequence[Judged],
    now: datetime,
    summary: RunSummary,
) -> HerdState:
    """Trip or clear the herd guard; the guard as it stands after."""
    store = HerdStore(ctx.redis)
    policy = HerdPolicy.from_settings(ctx.settings)
    since = counting_since(state, now, policy)
    moved = {j.server.id for j in applied if j.server.health != j.verdict.state}
    herd = fleet = 0
    for j in judged:
        if not j.server.watched:
            continue
        fleet += 1
        was_written = j.server.id in moved
        state_now = j.verdict.state if was_written else j.server.health
        turned = now if was_written else j.server.changed_at
        if state_now == HealthState.UNHEALTHY and turned is not None and turned >= since:
            herd += 1
    result = assess(herd, fleet, state, policy)
    if result.change == Change.TRIP and store.trip(now, result.reason):
        summary.acted["herd_trip"] += 1
        log.error("herd guard tripped: %s; automatic repair paused", result.reason)
        record_fleet_event(
            f"herd guard tripped: {result.reason}; automatic repair and probes pause until "
            "the share drops, or `rachel-cloud health resume`",
            "cron",
            ctx.clock,
        )
        alert_operators(
            ctx.redis,
            None,
            "herd guard tripped",
            result.reason,
            "automatic repair is paused (a shared cause?); it resumes by itself when the "
            "share drops, or run `rachel-cloud health resume`",
        )
    elif result.change == Change.CLEAR and store.clear():
        summary.acted["herd_clear"] += 1
        log.warning("herd guard cleared: %s; automatic repair resumes", result.reason)
        record_fleet_event(
            f"herd guard cleared: {result.reason}; automatic repair resumes", "cron", ctx.clock
        )
    return store.read()[0]


# --- probes and repairs -------------------------------------------------------------


def _plan(
    ctx: JobContext,
    judged: Sequence[Judged],
    *,
    recall: Recall,
    holding: str | None,
    herd_tripped: bool,
    now: datetime,
    summary: RunSummary,
) -> None:
    """Queue the probes and repair steps the verdicts call for (one per server at most).

    A repair step the evidence calls for comes first: a probe is for a server
    nothing can be done for yet (silent, or waiting on its last repair). The
    other way round, a probe slower than its back-off (a frozen VPS holds one
    for the whole SSH timeout) would be followed by another probe instead of
    the reset it found necessary.
    """
    policy = RepairPolicy.from_settings(ctx.settings)
    memory = HealthMemory(ctx.redis)
    for j in judged:
        if j.verdict.state not in (HealthState.UNHEALTHY, HealthState.DEGRADED):
            continue
        incident = j.server.incident(recall.acted.get(j.server.id))
        decision = decide_repair(
            j.verdict,
            incident,
            evidence_at=j.evidence_at,
            now=now,
            policy=policy,
            held=holding,
        )
        if decision.action in STEPS:
            if memory.claim(j.server.id, decision.action.value):
                _enqueue_repair(ctx, j, decision, now)
                summary.acted[decision.action.value] += 1
            continue
        due = probe_due(j.verdict, j.finding, incident, now=now, policy=policy)
        if due and not herd_tripped and memory.claim(j.server.id, "probe"):
            _enqueue_probe(ctx, j.server.id, now)
            summary.acted["probe"] += 1


def _enqueue_repair(ctx: JobContext, j: Judged, decision: Decision, now: datetime) -> None:
    enqueue_step(
        ctx.redis,
        FINISH,
        JobFunction.REPAIR_SERVER,
        j.server.id,
        f"repair-{decision.action.value}",
        record=False,
        entry=now,
        extra_args=(decision.action.value, decision.why, decision.next_step),
    )
    server_logger(log, j.server.id, "health").warning(
        "repair %s queued: %s (%s)", decision.action.value, j.verdict.reason, decision.why
    )


def _enqueue_probe(ctx: JobContext, server_id: int, now: datetime) -> None:
    enqueue_step(
        ctx.redis,
        FINISH,
        JobFunction.PROBE_SERVER,
        server_id,
        "probe",
        record=False,
        entry=now,
    )
