"""The health gate of one server's update (or rollback): passed, failed or still waiting.

After `jobs.update` switched a server to a commit, the rollout's tick
(`jobs.rollout`) judges the target at every pass with `judge`, from the
server's latest heartbeat (`core.domain.heartbeats.HeartbeatStore`, which
keeps one per server) and the same rule the health task applies
(`core.domain.health.judge_heartbeat`): a gate is the health rule, held for
`gate_seconds`, with the commit the server must now run.

Evidence is a heartbeat that arrived after the switch (the control plane's
clock: the box's may be skewed) showing the commit switched to. A heartbeat
that does not show it (sent before the link moved, still in flight) is no
evidence either way. The rules, first match wins:

- no evidence yet: failed when `gate_seconds` + RACHEL_HEARTBEAT_MISSING have
  passed since the switch (the agent is started by the switch itself, so a
  heartbeat is due at once), else waiting;
- the evidence is not healthy (unhealthy or degraded, by the health rule):
  failed with its reason. A crash between two heartbeats is not missed:
  systemd's restart counter (`NRestarts`, reset by the switch's own restart)
  grows, and a grown counter is "restarted", degraded;
- the evidence is older than RACHEL_HEARTBEAT_MISSING: failed (the server went
  silent during its gate);
- `gate_seconds` passed since the switch: passed;
- else waiting.

A rollback is gated the same way with `gate_seconds=0`: its first healthy
heartbeat showing the previous commit passes it.

After its gate a server is judged again at every tick while its rollout
watches (`core.domain.rollout_states.WATCHING_STATES`): `judge_soak` applies the same
rule to its latest heartbeat, so a release that crashes after a minute fails
in the soak of the wave that caught it instead of passing on to the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from core.domain.health import HealthPolicy, HealthState, judge_heartbeat, restarts_grew
from core.domain.health_store import from_epoch
from core.domain.heartbeats import StoredHeartbeat


class GateOutcome(StrEnum):
    """Where a server's gate stands."""

    PASSED = "passed"
    FAILED = "failed"
    WAITING = "waiting"


@dataclass(frozen=True)
class Gate:
    """A gate's outcome and why, in words fit for the target's row and its Event."""

    outcome: GateOutcome
    reason: str

    @property
    def passed(self) -> bool:
        return self.outcome == GateOutcome.PASSED

    @property
    def failed(self) -> bool:
        return self.outcome == GateOutcome.FAILED

    @property
    def waiting(self) -> bool:
        return self.outcome == GateOutcome.WAITING


def judge(
    latest: StoredHeartbeat | None,
    *,
    commit: str,
    switched_at: datetime,
    gate_seconds: float,
    now: datetime,
    policy: HealthPolicy,
    restarts_at_switch: int = 0,
) -> Gate:
    """The gate of a server switched to `commit` at `switched_at` (see the module's rules).

    Args:
        latest: the server's latest heartbeat, if any.
        commit: the commit the server must run now (the target's `to_commit`, or
            its `from_commit` for a rollback).
        switched_at: when the switch was done (naive UTC, the control plane's clock).
        gate_seconds: how long every heartbeat must stay healthy (the rollout's
            `gate_seconds`; 0 for a rollback).
        now: the time of the decision (naive UTC).
        policy: the health thresholds (RACHEL_HEARTBEAT_MISSING and fixed limits).
        restarts_at_switch: Rachel8's `NRestarts` right after the switch (0 when the
            switch restarted the unit: a manual restart resets systemd's counter).
    """
    since = (now - switched_at).total_seconds()
    evidence = _evidence(latest, commit=commit, switched_at=switched_at)
    if evidence is None:
        limit = gate_seconds + policy.missing_seconds
        if since < limit:
            return Gate(GateOutcome.WAITING, f"waiting for a heartbeat showing {commit[:12]}")
        shown = latest.heartbeat.commit if latest is not None else None
        seen = f" (the latest shows {shown[:12]})" if shown and shown != commit else ""
        return Gate(
            GateOutcome.FAILED,
            f"no heartbeat showing Rachel8 {commit[:12]} within {limit:.0f}s of the switch{seen}",
        )
    failure = _unhealthy(
        evidence,
        commit=commit,
        now=now,
        policy=policy,
        restarts_at_switch=restarts_at_switch,
        after_gate=False,
    )
    if failure is not None:
        return failure
    if since >= gate_seconds:
        return Gate(GateOutcome.PASSED, f"healthy on {commit[:12]} for {gate_seconds:.0f}s")
    return Gate(GateOutcome.WAITING, f"healthy on {commit[:12]} so far")


def judge_soak(
    latest: StoredHeartbeat | None,
    *,
    commit: str,
    switched_at: datetime,
    now: datetime,
    policy: HealthPolicy,
    restarts_at_switch: int = 0,
) -> Gate:
    """A server that passed its gate, judged again while its rollout watches it.

    PASSED while its latest heartbeat (sent after the switch) is healthy on
    `commit` and fresh; FAILED with the reason when it is unhealthy or degraded
    (a crash since the switch shows as systemd's restart counter grown), shows
    another commit, or is older than RACHEL_HEARTBEAT_MISSING (the server went
    silent). Never WAITING: the gate already saw the server healthy.

    Args:
        latest: the server's latest heartbeat, if any.
        commit: the commit the server was switched to (the target's `to_commit`).
        switched_at: when it was switched (naive UTC, the control plane's clock).
        now: the time of the decision (naive UTC).
        policy: the health thresholds.
        restarts_at_switch: Rachel8's `NRestarts` right after the switch (as `judge`).
    """
    if latest is None or from_epoch(latest.received_at) <= switched_at:
        return Gate(GateOutcome.FAILED, "after its gate: no heartbeat since its switch")
    failure = _unhealthy(
        latest,
        commit=commit,
        now=now,
        policy=policy,
        restarts_at_switch=restarts_at_switch,
        after_gate=True,
    )
    return failure or Gate(GateOutcome.PASSED, f"still healthy on {commit[:12]}")


def _unhealthy(
    evidence: StoredHeartbeat,
    *,
    commit: str,
    now: datetime,
    policy: HealthPolicy,
    restarts_at_switch: int,
    after_gate: bool,
) -> Gate | None:
    """FAILED when a heartbeat after the switch is not healthy on `commit`, or too old
    (the reason says `after its gate` for `judge_soak`); else None."""
    heartbeat = evidence.heartbeat
    restarts = heartbeat.service.restarts if heartbeat.service is not None else None
    verdict = judge_heartbeat(
        heartbeat,
        commit=commit,
        restarted=restarts is not None and restarts_grew(restarts_at_switch, restarts),
        policy=policy,
    )
    if verdict.state != HealthState.HEALTHY:
        prefix = "after its gate: " if after_gate else ""
        return Gate(GateOutcome.FAILED, f"{prefix}{verdict.state}: {verdict.reason}")
    age = (now - from_epoch(evidence.received_at)).total_seconds()
    if age >= policy.missing_seconds:
        return Gate(
            GateOutcome.FAILED,
            f"silent {'after its gate' if after_gate else 'during the gate'}: "
            f"no heartbeat for more than {policy.missing_seconds:.0f}s",
        )
    return None


def _evidence(
    latest: StoredHeartbeat | None, *, commit: str, switched_at: datetime
) -> StoredHeartbeat | None:
    """`latest` when it arrived after the switch and shows `commit`; else None."""
    if latest is None or latest.heartbeat.commit != commit:
        return None
    if from_epoch(latest.received_at) <= switched_at:
        return None
    return latest


def judge_rollback(
    latest: StoredHeartbeat | None,
    *,
    from_commit: str,
    row_commit: str | None,
    rollback_at: datetime | None,
    now: datetime,
    policy: HealthPolicy,
) -> Gate:
    """The gate of a rollback: its first healthy heartbeat of `from_commit` passes it.

    The rollback job (`jobs.update.rollback_server`) sets the row's commit back
    to `from_commit` and stamps `rollback_at` once it has switched back; until
    then (the job is queued, or its worker died: the driver re-queues it) the
    gate waits, whatever time passes.

    Args:
        latest: the server's latest heartbeat, if any.
        from_commit: the commit the server ran before the update.
        row_commit: `Server.rachel8_commit` now.
        rollback_at: `RolloutTarget.rollback_at` (the switch back's time once done).
        now: the time of the decision (naive UTC).
        policy: the health thresholds.
    """
    if rollback_at is None or row_commit != from_commit:
        return Gate(GateOutcome.WAITING, f"waiting for the switch back to {from_commit[:12]}")
    return judge(
        latest,
        commit=from_commit,
        switched_at=rollback_at,
        gate_seconds=0,
        now=now,
        policy=policy,
    )
