"""What the rollouts screen reads: the newest rollout, its servers, the recent rollouts.

Blocking database reads for the TUI's worker threads, returned as frozen plain
values (no Textual, no model instances): the screen compares one read with the
last and redraws only what changed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.domain.releases import ReleaseRow
from core.domain.rollout_store import EVENT_KIND
from core.security.redaction import redact
from core.store.db import connection
from core.store.models import Event, Release, Rollout, RolloutTarget, Server
from tui.reads import build, redacted

#: Recent rollouts listed below the newest one's servers.
RECENT_ROLLOUTS = 8
#: The newest rollout's fleet Events shown (its steps: waves, soaks, halts, operators).
RECENT_STEPS = 4


@dataclass(frozen=True)
class RolloutInfo:
    """A rollout, with its target release's commit and notes."""

    id: int
    state: str
    commit: str
    notes: str
    reason: str | None
    wave: int
    soak_until: datetime | None
    canary: int
    shares: tuple[float, ...]
    max_in_flight: int
    soak_seconds: float
    gate_seconds: float
    halt_share: float
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class TargetInfo:
    """One server of a rollout and what became of it."""

    server_id: int
    name: str | None
    location: str
    wave: int  # core.domain.rollout_states.NO_WAVE: skipped when planned
    position: int
    state: str
    from_commit: str | None
    to_commit: str
    reason: str | None
    started_at: datetime | None
    switched_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class StepLine:
    """One of the rollout's fleet Events (its steps and the operators' actions)."""

    at: datetime
    actor: str
    message: str


@dataclass(frozen=True)
class RolloutsData:
    """One read of the rollouts screen.

    Attributes:
        rollout: the newest rollout (the live one, if any: none starts beside it).
        targets: its servers, in the rollout's order.
        steps: its newest fleet Events, oldest first.
        recent: the newest rollouts, newest first (`rollout` among them).
        releases: every release, newest first.
    """

    rollout: RolloutInfo | None
    targets: tuple[TargetInfo, ...]
    steps: tuple[StepLine, ...]
    recent: tuple[RolloutInfo, ...]
    releases: tuple[ReleaseRow, ...]


def _info(row: dict[str, Any]) -> RolloutInfo:
    shares = tuple(float(s) for s in json.loads(row["shares"]))
    return build(RolloutInfo, row, reason=redacted(row["reason"]), shares=shares)


def recent_rollouts(limit: int = RECENT_ROLLOUTS) -> list[RolloutInfo]:
    """The newest `limit` rollouts, newest first."""
    query: Any = (
        Rollout.select(Rollout, Release.commit, Release.notes)
        .join(Release, on=(Rollout.release == Release.id))
        .order_by(Rollout.id.desc())
        .limit(limit)
        .dicts()
    )
    return [_info(row) for row in query]


def targets_of(rollout_id: int) -> list[TargetInfo]:
    """The rollout's servers, in its order."""
    query: Any = (
        RolloutTarget.select(RolloutTarget, Server.name, Server.location)
        .join(Server, on=(RolloutTarget.server == Server.id))
        .where(RolloutTarget.rollout == rollout_id)
        .order_by(RolloutTarget.position)
        .dicts()
    )
    return [
        build(TargetInfo, t, server_id=t["server"], reason=redacted(t["reason"])) for t in query
    ]


def steps_of(rollout_id: int, limit: int = RECENT_STEPS) -> list[StepLine]:
    """The rollout's newest `limit` fleet Events, oldest first."""
    query: Any = (
        Event.select(Event.at, Event.actor, Event.message)
        .where(
            Event.server.is_null()
            & (Event.kind == EVENT_KIND)
            & Event.message.startswith(f"rollout {rollout_id}:")
        )
        .order_by(Event.id.desc())
        .limit(limit)
        .tuples()
    )
    return [StepLine(at, actor, redact(message)) for at, actor, message in reversed(list(query))]


def read_rollouts(releases: Sequence[ReleaseRow]) -> RolloutsData:
    """The rollouts screen's data (`releases`: as `core.domain.releases.list_releases` lists)."""
    with connection():
        recent = recent_rollouts()
        newest = recent[0] if recent else None
        targets = targets_of(newest.id) if newest else []
        steps = steps_of(newest.id) if newest else []
    return RolloutsData(newest, tuple(targets), tuple(steps), tuple(recent), tuple(releases))
