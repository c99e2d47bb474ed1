"""Switching one server of a rollout back to the commit it ran before: an RQ job.

The rollout driver (`jobs.rollout`) moves a switched target to `rolling_back`
(its gate or its soak failed, or the rollout halted) and queues
`jobs.update.enqueue_rollback`. `rollback_server` takes the target id only and
re-reads everything; it is idempotent (the VPS's `switch` stage is), so RQ's
retry of a killed work horse, or the driver's re-queue of a stuck target,
repeats nothing that matters.

It switches the server back to its `from_commit` (the row's commit with it)
and stamps `rollback_at` with the time of the switch; the tick passes it at
the first healthy heartbeat of that commit (`rollout_gate.judge_rollback`).
A rollback that cannot switch back is `rollback_failed`, the claim is
released (health repair may act again) and operators are alerted. A server
no longer ready has nothing to roll back.
"""

from __future__ import annotations

import logging

from core.cloud import vps_update
from core.cloud.ssh import Target
from core.cloud.vps_update import VpsUpdateError
from core.domain.lifecycle import Status
from core.domain.rollout_states import TargetState
from core.store.models import RolloutTarget, Server
from jobs.health_writes import alert_operators
from jobs.update_step import TargetStep, run_step, service_words, short, stage_words, status_words


def rollback_server(target_id: int) -> str:
    """RQ job: switch one server of a rollout back to the commit it ran before."""
    # Switched back: the tick's gate waits for its heartbeat.
    return run_step(_Rollback, target_id, in_flight="switched back")


class _Rollback(TargetStep):
    kind = "rollback"

    def run(self) -> str:
        target, server = self.target, self.server
        if target.state != TargetState.ROLLING_BACK:
            return f"skipped: the target is {target.state}"
        if server.status != Status.READY:
            return self.gone()
        why_not = self.why_not()
        if why_not is not None:
            return self.failed(why_not)
        ssh, why = self.ssh()
        if ssh is None:
            return self.failed(f"cannot reach the VPS: {why}")
        return self.switch_back(ssh, str(target.from_commit))

    def gone(self) -> str:
        """Nothing left to roll back: the VPS goes (or went) with its server."""
        gone = status_words(self.server.status)
        self.finish(
            TargetState.ROLLING_BACK, TargetState.ROLLED_BACK, f"{gone}: nothing to roll back"
        )
        self.release()
        self.count("skipped")
        return f"skipped: {gone}"

    def why_not(self) -> str | None:
        """Why the rollback cannot be done; None once the server is claimed for it."""
        if self.target.from_commit is None:
            return "no previous commit recorded to switch back to"
        if not self.claim():
            holder = Server.get_by_id(self.server.id).update_claim
            return f"another update holds the server (rollout target {holder})"
        return None

    def switch_back(self, ssh: Target, previous: str) -> str:
        """Switch to `previous`; the row says it again, and the tick's gate waits for its
        heartbeat."""
        target = self.target
        try:
            back = vps_update.switch(ssh, previous, layout=self.layout, timeout=self.timeout)
        except VpsUpdateError as exc:
            return self.failed(f"switch back: {exc.code}: {exc.message}")
        if not back.ok:
            return self.failed(f"switch back failed: {stage_words(back)}")
        Server.update(rachel8_commit=previous).where(Server.id == self.server.id).execute()
        RolloutTarget.update(rollback_at=self.ctx.clock.now()).where(
            (RolloutTarget.id == target.id)
            & (RolloutTarget.state == TargetState.ROLLING_BACK.value)
        ).execute()
        self.count("switched_back")
        self.note(
            f"rolled Rachel8 back {short(target.to_commit)} -> {short(previous)}"
            f"{service_words(back)} ({target.reason or 'the rollout halted'}); "
            "waiting for a healthy heartbeat"
        )
        return f"switched back to {short(previous)}"

    def failed(self, reason: str) -> str:
        """The rollback could not be done: operators must look."""
        self.finish(TargetState.ROLLING_BACK, TargetState.ROLLBACK_FAILED, reason)
        self.release()
        self.count("rollback_failed")
        self.note(f"rollback failed: {reason}", logging.ERROR)
        alert_operators(
            self.ctx.redis,
            self.server.id,
            "Rachel8 rollback failed",
            f"{reason} (it should run {short(self.target.from_commit)}, "
            f"not {short(self.target.to_commit)})",
            "look at the server (rachel-cloud server diagnose); `rachel-cloud rollout "
            "rollback` tries again",
        )
        return f"rollback_failed: {reason}"
