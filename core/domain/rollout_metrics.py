"""Release and rollout metrics: what `/metrics` shows of Rachel8 versions across the fleet.

The update and rollback jobs (`jobs.update`) and the rollout driver run in
any worker, so their outcomes are counted in Redis (one hash, incremented
best effort: a metric never fails an update). The rest is read from the
database when `/metrics` is scraped.

- `rachel_cloud_servers_release{commit}` (gauge): ready servers by the Rachel8
  commit their row says they run;
- `rachel_cloud_rollout_targets{rollout,state}` (gauge): the targets of the
  latest rollout by state (its progress);
- `rachel_cloud_rollout_live` (gauge, 0 or 1): a rollout is live (planned,
  running, paused, halted or rolling back);
- `rachel_cloud_rollout_steps_total{kind,outcome}` (counter): update and
  rollback steps by outcome (update: switched, failed, skipped, gate_passed,
  gate_failed, soak_failed (unhealthy after its gate), rollback_failed;
  rollback: switched_back, rolled_back, rollback_failed, skipped).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import peewee
import redis

from core.domain.exposition import Exposition
from core.domain.lifecycle import Status
from core.domain.rollout_states import LIVE_STATES, TargetState
from core.store.models import Rollout, RolloutTarget, Server

log = logging.getLogger(__name__)

STEPS_KEY = "rc:rollout:metrics:steps"


def count_outcome(client: Any, kind: str, outcome: str) -> None:
    """One `update` or `rollback` step and its outcome (best effort)."""
    try:
        client.hincrby(STEPS_KEY, f"{kind}|{outcome}", 1)
    except redis.RedisError as exc:
        log.warning("could not count the %s outcome %s: %s", kind, outcome, exc)


@dataclass(frozen=True)
class RolloutSnapshot:
    """The release figures of one scrape.

    Attributes:
        by_commit: ready servers per Rachel8 commit (None: not recorded).
        rollout_id: the latest rollout's id (None: there was none).
        targets: its targets by state (every state, zeros included).
        live: whether it is live.
        steps: update and rollback steps by (kind, outcome).
    """

    by_commit: Mapping[str | None, int]
    rollout_id: int | None = None
    targets: Mapping[str, int] = field(default_factory=dict)
    live: bool = False
    steps: Mapping[tuple[str, str], int] = field(default_factory=dict)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def collect_rollouts(client: redis.Redis) -> RolloutSnapshot:
    """Read the figures (call within `core.store.db.connection()`)."""
    commits: Any = (
        Server.select(Server.rachel8_commit, peewee.fn.COUNT(Server.id))
        .where(Server.status == Status.READY.value)
        .group_by(Server.rachel8_commit)
        .tuples()
    )
    by_commit = {commit: int(count) for commit, count in commits}
    latest = Rollout.select(Rollout.id, Rollout.state).order_by(Rollout.id.desc()).first()
    targets = dict.fromkeys((s.value for s in TargetState), 0)
    if latest is not None:
        rows: Any = (
            RolloutTarget.select(RolloutTarget.state, peewee.fn.COUNT(RolloutTarget.id))
            .where(RolloutTarget.rollout == latest.id)
            .group_by(RolloutTarget.state)
            .tuples()
        )
        for state, count in rows:
            targets[str(state)] = int(count)
    steps: dict[tuple[str, str], int] = {}
    for key, value in client.hgetall(STEPS_KEY).items():
        kind, _, outcome = _text(key).partition("|")
        steps[(kind, outcome)] = int(value)
    return RolloutSnapshot(
        by_commit=by_commit,
        rollout_id=latest.id if latest is not None else None,
        targets=targets if latest is not None else {},
        live=latest is not None and latest.state in LIVE_STATES,
        steps=steps,
    )


def render_rollouts(out: Exposition, snap: RolloutSnapshot) -> None:
    """Add the release and rollout families to `out`."""
    out.family("rachel_cloud_servers_release", "gauge", "Ready servers by Rachel8 commit.")
    for commit, count in sorted(snap.by_commit.items(), key=lambda kv: kv[0] or ""):
        out.sample("rachel_cloud_servers_release", count, commit=commit or "unknown")
    out.family("rachel_cloud_rollout_targets", "gauge", "The latest rollout's servers by state.")
    if snap.rollout_id is not None:
        for state, count in sorted(snap.targets.items()):
            out.sample(
                "rachel_cloud_rollout_targets", count, rollout=str(snap.rollout_id), state=state
            )
    out.family("rachel_cloud_rollout_live", "gauge", "1 while a rollout is live.")
    out.sample("rachel_cloud_rollout_live", int(snap.live))
    out.family("rachel_cloud_rollout_steps", "counter", "Update and rollback steps, by outcome.")
    for (kind, outcome), count in sorted(snap.steps.items()):
        out.sample("rachel_cloud_rollout_steps_total", count, kind=kind, outcome=outcome)
