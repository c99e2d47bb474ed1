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

With nothing changed a pass costs the three reads and the decisions: no
per-server query, no write but the memos of new heartbeats.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import peewee
import redis

from core.domain.events import publish
from core.domain.health import (
    TOLD,
    Finding,
    HealthPolicy,
    HealthState,
    Verdict,
    decide,
    restarts_grew,
)
from core.domain.health_metrics import observe_recoveries
from core.domain.health_store import HealthMemory, Memo, Recall, from_epoch
from core.domain.heartbeats import HeartbeatStore, StoredHeartbeat
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
from core.domain.lifecycle import Status
from core.domain.repair import (
    STEPS,
    Decision,
    Incident,
    RepairPolicy,
    decide_repair,
    probe_due,
)
from core.platform.logs import server_logger
from core.platform.runs import RunSummary
from core.store.db import connection, write_transaction
from core.store.models import Event, Server
from jobs.context import JobContext, context
from jobs.queues import FINISH, enqueue_step, queue
from jobs.registry import JobFunction
from jobs.taskrun import task_run

log = logging.getLogger(__name__)

EVENT_KIND = "health"
#: Rows per bulk UPDATE / INSERT.
_CHUNK = 500
NOTIFY_RESULT_TTL = 3600


class Watched(NamedTuple):
    """A ready server as the pass reads it (`COLUMNS`, in this order)."""

    id: int
    name: str | None
    health: str
    reason: str | None
    changed_at: datetime | None
    ready_at: datetime | None
    commit: str | None
    watched: bool
    window_started_at: datetime | None
    restarts: int
    rebooted_at: datetime | None
    breaker_until: datetime | None
    notified_down_at: datetime | None

    def incident(self, last_action_at: datetime | None) -> Incident:
        return Incident(
            window_started_at=self.window_started_at,
            restarts=self.restarts,
            rebooted_at=self.rebooted_at,
            breaker_until=self.breaker_until,
            last_action_at=last_action_at,
        )


COLUMNS: tuple[Any, ...] = (
    Server.id,
    Server.name,
    Server.health,
    Server.health_reason,
    Server.health_changed_at,
    Server.ready_at,
    Server.rachel8_commit,
    Server.heartbeat_credential_hash.is_null(False),
    Server.repair_window_started_at,
    Server.repair_restarts,
    Server.repair_rebooted_at,
    Server.breaker_until,
    Server.owner_notified_down_at,
)


def watched_of(row: Server) -> Watched:
    """A full row as the pass would have read it."""
    return Watched(
        row.id,
        row.name,
        row.health,
        row.health_reason,
        row.health_changed_at,
        row.ready_at,
        row.rachel8_commit,
        row.heartbeat_credential_hash is not None,
        row.repair_window_started_at,
        row.repair_restarts,
        row.repair_rebooted_at,
        row.breaker_until,
        row.owner_notified_down_at,
    )


@dataclass(frozen=True)
class Judged:
    """A server, its health as decided now, and when what it rests on was seen."""

    server: Watched
    verdict: Verdict
    evidence_at: datetime | None
    finding: Finding | None

    @property
    def changed(self) -> bool:
        return self.verdict.differs(self.server.health, self.server.reason)


def check_health() -> str:
    """RQ job (cron): one health pass over the ready fleet."""
    ctx = context()
    with task_run(ctx.redis, "health", record_event=False) as summary:
        if summary is None:
            return "skipped: already running"
        run(ctx, summary=summary)
        return summary.line()


def ready_servers() -> list[Watched]:
    """Every ready server (one query; call within `connection()`)."""
    rows: Any = Server.select(*COLUMNS).where(Server.status == Status.READY).tuples()
    return [Watched(*row) for row in rows]


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
    herd = _guard(ctx, herd, judged=judged, applied=applied, now=now, summary=summary)
    notify_changes(ctx, applied, herd_tripped=herd.tripped)
    if was_tripped and not herd.tripped:
        tell_owners_after_herd(ctx, judged)
    _plan(
        ctx,
        judged,
        recall=recall,
        holding=held(herd, pause),
        herd_tripped=herd.tripped,
        now=now,
        summary=summary,
    )
    ready = {s.id for s in servers}
    known = set(recall.memos) | set(recall.findings) | set(recall.acted)
    memory.save(memos, stale_findings=_outdated(judged), forget=known - ready)
    return summary


def _outdated(judged: Iterable[Judged]) -> list[int]:
    """Servers whose probe finding a newer heartbeat replaced."""
    return [
        j.server.id
        for j in judged
        if j.finding is not None
        and j.verdict is not j.finding.verdict
        and j.evidence_at is not None
        and j.evidence_at > j.finding.at
    ]


def judge_all(
    servers: Sequence[Watched],
    latest: dict[int, StoredHeartbeat],
    recall: Recall,
    now: datetime,
    policy: HealthPolicy,
) -> tuple[list[Judged], dict[int, Memo]]:
    """Every server's verdict, and the memos of heartbeats judged for the first time."""
    judged: list[Judged] = []
    memos: dict[int, Memo] = {}
    for server in servers:
        stored = latest.get(server.id)
        restarted, received = False, None
        if stored is not None:
            received = from_epoch(stored.received_at)
            memo = recall.memos.get(server.id)
            service = stored.heartbeat.service
            if memo is not None and memo.seq == stored.heartbeat.seq:
                restarted = memo.restarted
            else:
                count = service.restarts if service is not None else -1
                before = memo.restarts if memo is not None and memo.restarts >= 0 else None
                restarted = count >= 0 and restarts_grew(before, count)
                memos[server.id] = Memo(stored.heartbeat.seq, count, restarted)
        finding = recall.findings.get(server.id)
        verdict = decide(
            stored,
            received_at=received,
            now=now,
            ready_at=server.ready_at,
            watched=server.watched,
            commit=server.commit,
            restarted=restarted,
            finding=finding,
            policy=policy,
        )
        from_probe = finding is not None and verdict is finding.verdict
        evidence = finding.at if from_probe and finding is not None else received
        judged.append(Judged(server, verdict, evidence, finding))
    return judged, memos


# --- writing changes --------------------------------------------------------------


def apply_verdicts(ctx: JobContext, changes: Sequence[Judged], now: datetime) -> list[Judged]:
    """`write_verdicts`, then `notify_changes` (a probe's verdict, say)."""
    applied = write_verdicts(ctx, changes, now)
    notify_changes(ctx, applied, herd_tripped=HerdStore(ctx.redis).read()[0].tripped)
    return applied


def write_verdicts(
    ctx: JobContext,
    changes: Sequence[Judged],
    now: datetime,
    *,
    summary: RunSummary | None = None,
) -> list[Judged]:
    """Write changed verdicts (compare-and-set on the health and reason read), with
    their Events; publish and log them; time the recoveries.

    Returns:
        The changes written (a row another writer changed meanwhile is skipped).
    """
    if not changes:
        return []
    applied: list[Judged] = []
    with connection() as db:
        for start in range(0, len(changes), _CHUNK):
            applied += _write(db, changes[start : start + _CHUNK], now)
    with ctx.redis.pipeline(transaction=False) as pipe:
        for j in applied:
            publish(
                pipe,
                {
                    "type": "health",
                    "server_id": j.server.id,
                    "health": j.verdict.state.value,
                    "reason": j.verdict.reason,
                    "at": now.isoformat(),
                },
            )
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not publish %d health changes: %s", len(applied), exc)
    recovered = []
    for j in applied:
        _log_change(j)
        if summary is not None:
            summary.found[f"to_{j.verdict.state.value}"] += 1
        old = j.server
        if old.health == HealthState.UNHEALTHY and j.verdict.state in _UP and old.changed_at:
            recovered.append((now - old.changed_at).total_seconds())
    observe_recoveries(ctx.redis, recovered)
    return applied


def notify_changes(ctx: JobContext, applied: Iterable[Judged], *, herd_tripped: bool) -> None:
    """Queue what written changes call for: the owner told "down" (not during a herd:
    operators hear of it once) or "back", operators told of what restarts cannot fix."""
    for j in applied:
        old, verdict = j.server, j.verdict
        if old.health == HealthState.UNHEALTHY and verdict.state in _UP:
            if old.notified_down_at is not None:
                _tell_owner(ctx.redis, old.id, "back", verdict)
        elif verdict.owner_down and old.notified_down_at is None and not herd_tripped:
            _tell_owner(ctx.redis, old.id, "down", verdict)
        if verdict.problem in TOLD:
            alert_operators(
                ctx.redis,
                old.id,
                f"unhealthy: {verdict.problem.value.replace('_', ' ')}",
                verdict.reason,
                "restarts do not fix this; the owner is told what to do",
            )


def tell_owners_after_herd(ctx: JobContext, judged: Iterable[Judged]) -> None:
    """The herd guard cleared: owners whose assistant is still down hear of it now.

    During a herd nobody's owner is told (the cause is shared, operators know);
    a server that stays down once it is over is an outage of its own.
    """
    for j in judged:
        if j.verdict.owner_down and j.server.notified_down_at is None:
            _tell_owner(ctx.redis, j.server.id, "down", j.verdict)


_UP = (HealthState.HEALTHY, HealthState.DEGRADED)


def _write(db: peewee.Database, changes: Sequence[Judged], now: datetime) -> list[Judged]:
    ids = [j.server.id for j in changes]
    with write_transaction(db):
        query = Server.select(Server.id, Server.health, Server.health_reason).where(
            Server.id.in_(ids) & (Server.status == Status.READY)
        )
        if isinstance(db, peewee.PostgresqlDatabase):
            query = query.for_update()
        rows: Any = query.tuples()
        current = {server_id: (health, reason) for server_id, health, reason in rows}
        applied = [
            j for j in changes if current.get(j.server.id) == (j.server.health, j.server.reason)
        ]
        if not applied:
            return []
        moved = [(j.server.id, now) for j in applied if j.server.health != j.verdict.state]
        Server.update(
            health=peewee.Case(Server.id, [(j.server.id, j.verdict.state.value) for j in applied]),
            health_reason=peewee.Case(
                Server.id, [(j.server.id, j.verdict.reason) for j in applied]
            ),
            health_changed_at=peewee.Case(Server.id, moved, Server.health_changed_at)
            if moved
            else Server.health_changed_at,
        ).where(Server.id.in_([j.server.id for j in applied])).execute()
        Event.insert_many(
            [
                {
                    "server": j.server.id,
                    "at": now,
                    "kind": EVENT_KIND,
                    "message": j.verdict.reason,
                    "actor": "system",
                    "from_status": j.server.health,
                    "to_status": j.verdict.state.value,
                }
                for j in applied
            ]
        ).execute()
    return applied


def _log_change(j: Judged) -> None:
    level = logging.WARNING if j.verdict.state == HealthState.UNHEALTHY else logging.INFO
    server_logger(log, j.server.id, "health").log(
        level,
        "health %s -> %s: %s",
        j.server.health,
        j.verdict.state.value,
        j.verdict.reason,
    )


def _tell_owner(conn: redis.Redis, server_id: int, what: str, verdict: Verdict) -> None:
    queue(conn, FINISH).enqueue(
        JobFunction.TELL_OWNER.path,
        server_id,
        what,
        verdict.problem.value,
        result_ttl=NOTIFY_RESULT_TTL,
        description=f"server {server_id}: tell the owner {what}",
    )


def alert_operators(
    conn: redis.Redis, server_id: int | None, what: str, why: str, next_step: str
) -> None:
    """Queue one operator alert (`jobs.notifying.alert_operators`)."""
    queue(conn, FINISH).enqueue(
        JobFunction.ALERT_OPERATORS.path,
        server_id,
        what,
        why,
        next_step,
        result_ttl=NOTIFY_RESULT_TTL,
        description=f"{'server ' + str(server_id) if server_id else 'fleet'}: alert operators",
    )


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
