"""What one health pass writes: changed verdicts (in bulk, compare-and-set, with
their Events and live messages), and the notifications the changes call for.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import peewee
import redis

from core.domain.events import publish
from core.domain.health import (
    TOLD,
    HealthState,
    Problem,
    Verdict,
)
from core.domain.health_metrics import observe_recoveries
from core.domain.herd import (
    HerdStore,
)
from core.domain.lifecycle import Status
from core.platform.logs import server_logger
from core.platform.runs import RunSummary
from core.store.db import connection, write_transaction
from core.store.models import Event, Server
from jobs.context import JobContext
from jobs.health_fleet import Judged
from jobs.queues import FINISH, queue
from jobs.registry import JobFunction

log = logging.getLogger(__name__)

EVENT_KIND = "health"
#: Rows per bulk UPDATE / INSERT.
_CHUNK = 500
NOTIFY_RESULT_TTL = 3600


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
                _OWNER_ACTS.get(
                    verdict.problem, "restarts do not fix this; the owner is told what to do"
                ),
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
#: What happens next for a problem the owner must fix, when that is not the usual.
_OWNER_ACTS = {
    Problem.TOKEN_REVOKED: (
        "restarts do not fix this, and the owner cannot be told through a revoked bot: "
        "reach them another way so that they enter a new token"
    ),
}


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
