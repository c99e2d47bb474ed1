"""What one health pass reads and decides: the ready servers as it reads them
(`Watched`, plain tuples of `COLUMNS`) and each one's verdict (`Judged`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from core.domain.health import (
    Finding,
    HealthPolicy,
    Verdict,
    decide,
    restarts_grew,
)
from core.domain.health_store import Memo, Recall, from_epoch
from core.domain.heartbeats import StoredHeartbeat
from core.domain.lifecycle import Status
from core.domain.repair import (
    Incident,
)
from core.store.models import Server

log = logging.getLogger(__name__)


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


def ready_servers() -> list[Watched]:
    """Every ready server (one query; call within `connection()`)."""
    rows: Any = Server.select(*COLUMNS).where(Server.status == Status.READY).tuples()
    return [Watched(*row) for row in rows]


def claimed_servers() -> set[int]:
    """Ready servers a Rachel8 update holds (`jobs.update`): their rollout's health
    gate owns them, so the pass neither probes nor repairs them (call within
    `connection()`)."""
    rows: Any = (
        Server.select(Server.id)
        .where((Server.status == Status.READY) & Server.update_claim.is_null(False))
        .tuples()
    )
    return {server_id for (server_id,) in rows}


def outdated(judged: Iterable[Judged]) -> list[int]:
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
            previous=server.health,
        )
        from_probe = finding is not None and verdict is finding.verdict
        evidence = finding.at if from_probe and finding is not None else received
        judged.append(Judged(server, verdict, evidence, finding))
    return judged, memos
