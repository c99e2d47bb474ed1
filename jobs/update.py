"""Per-server Rachel8 updates, and queueing them and their rollbacks (on `rc-update`).

The rollout driver (`jobs.rollout`) moves a target to `updating` and queues
`enqueue_update`; once a target must go back (its gate failed, or the
rollout halted) it moves it to `rolling_back` and queues `enqueue_rollback`
(`jobs.rollback`).
Both jobs take a `RolloutTarget` id only and re-read everything; both are
idempotent (the VPS's `prepare` and `switch` stages are), so RQ's retry of a
killed work horse, or the driver's re-queue of a stuck target, repeats
nothing that matters.

`update_server`:

1. gives up on a target no longer `updating` (the rollout halted meanwhile);
   skips (and records why) a server that is not ready (`deprovisioned` once it
   is on its way out) or not healthy, or one another update holds;
2. claims the server (`Server.update_claim`, a compare-and-set on a ready,
   unclaimed row): a re-injection, a deprovision and health repair leave a
   claimed server to its update;
3. prepares the target commit beside the running one (`core.cloud.vps_update`:
   a clone, `bun install --frozen-lockfile`, the `.env`); a failure fails the
   target with nothing switched, and the claim is released;
4. looks again (a deprovision wins: the update gives up, releasing the claim),
   then switches: the row's `rachel8_commit` becomes the target commit at once
   (the row always says what the server runs) and the target is `gating`. The
   job ends there: the driver's tick judges the gate (`core.domain.rollout_gate`)
   and, while the rollout watches the server, its health after the gate; the
   claim is given back when the rollout ends (`core.domain.rollout_claims`).
   A switch that fails is switched back at once.

Both jobs are queued here and share `jobs.update_step` (the target, its
server, the claim, the Events).

Every step is an Event (kind `update`) on the server's timeline and an outcome
counted for `/metrics` (`core.domain.rollout_metrics`).
"""

from __future__ import annotations

import logging

import redis
from rq import Retry
from rq.exceptions import DuplicateJobError
from rq.job import JobStatus

from core.cloud import vps_update
from core.cloud.ssh import Target
from core.cloud.vps_update import VpsUpdateError
from core.domain.health import HealthState
from core.domain.lifecycle import Status
from core.domain.rollout_states import RolloutState, TargetState
from core.store.models import Rollout, RolloutTarget, Server
from jobs.health_writes import alert_operators
from jobs.queues import (
    CRASH_RETRIES,
    CRASH_RETRY_INTERVALS,
    FAILURE_TTL,
    RESULT_TTL,
    UPDATE,
    fetch,
    queue,
)
from jobs.registry import JobFunction
from jobs.update_step import TargetStep, run_step, service_words, short, stage_words, status_words

log = logging.getLogger(__name__)

#: Release directories a VPS keeps in all (`prune`): the current, the previous, the newest.
RELEASES_KEPT = 3
#: Time limit of one job: a prepare clones and installs (minutes on a slow box).
UPDATE_JOB_TIMEOUT = 1800
#: Rollout states in which an update may still switch a server.
SWITCHING = frozenset({RolloutState.RUNNING, RolloutState.PAUSED})
#: Job statuses of a job still to run or running: enqueueing it again does nothing.
_LIVE = frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED})


# --- enqueueing ----------------------------------------------------------------------


def update_job_id(target_id: int) -> str:
    return f"target{target_id}-update"


def rollback_job_id(target_id: int) -> str:
    return f"target{target_id}-rollback"


def enqueue_update(conn: redis.Redis, target_id: int) -> str:
    """Make sure an update job for `target_id` is queued or running; its job id.

    Call after the target's move to `updating` committed. A job still queued or
    running is left alone; one that ended (a target the driver re-queues
    because it stayed `updating`) is replaced.
    """
    return _enqueue(conn, JobFunction.UPDATE_SERVER, update_job_id(target_id), target_id)


def enqueue_rollback(conn: redis.Redis, target_id: int) -> str:
    """Make sure a rollback job for `target_id` is queued or running (as `enqueue_update`)."""
    return _enqueue(conn, JobFunction.ROLLBACK_SERVER, rollback_job_id(target_id), target_id)


def _enqueue(conn: redis.Redis, func: JobFunction, jid: str, target_id: int) -> str:
    existing = fetch(conn, jid)
    if existing is not None:
        if existing.get_status(refresh=False) in _LIVE:
            return jid
        existing.delete()
    what = "update" if func == JobFunction.UPDATE_SERVER else "rollback"
    try:
        queue(conn, UPDATE).enqueue(
            func.path,
            target_id,
            job_id=jid,
            unique=True,
            # The jobs handle their own errors; RQ's retry is the net for a killed work horse.
            retry=Retry(max=CRASH_RETRIES, interval=CRASH_RETRY_INTERVALS),
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            job_timeout=UPDATE_JOB_TIMEOUT,
            description=f"rollout target {target_id}: {what}",
            meta={"target_id": target_id, "step": what},
        )
    except DuplicateJobError:
        log.debug("rollout target %s: %s already queued", target_id, jid)
    return jid


# --- the update ----------------------------------------------------------------------


def update_server(target_id: int) -> str:
    """RQ job: update one server of a rollout to the target commit, up to its gate."""
    return run_step(_Update, target_id, in_flight="gating")


class _Update(TargetStep):
    kind = "update"

    def run(self) -> str:
        target = self.target
        if target.state != TargetState.UPDATING:
            return f"skipped: the target is {target.state}"
        why_not = self.why_not()
        if why_not is not None:
            return self.skip(why_not)
        self.note(
            f"updating Rachel8 {short(target.from_commit)} -> {short(target.to_commit)} "
            f"(rollout {target.rollout_id}, wave {target.wave}): preparing the release"
        )
        ssh, why = self.ssh()
        if ssh is None:
            return self.fail(f"cannot reach the VPS: {why}")
        failed = self.prepare(ssh)
        if failed is not None:
            return failed
        why_not = self.still_wanted()
        if why_not is not None:
            self.release()
            return self.skip(why_not)
        return self.switch(ssh)

    def why_not(self) -> str | None:
        """Why this server is not to be updated now; None once it is claimed for it."""
        target, server = self.target, self.server
        rollout = Rollout.get_by_id(target.rollout_id)
        if rollout.state not in SWITCHING:
            return f"the rollout is {rollout.state}"
        # A re-run (RQ's retry of a killed job, the driver's re-queue) finds the claim
        # its own: the server was judged at the first run, and may have been switched
        # since, so its health now is the new release's, for the gate to judge.
        rerun = server.update_claim == self.tid
        why_not = _not_updatable(server, rerun=rerun)
        if why_not is not None:
            return why_not
        if not self.claim():
            fresh = Server.get_by_id(server.id)
            if fresh.status != Status.READY:
                return status_words(fresh.status)
            return f"another update holds the server (rollout target {fresh.update_claim})"
        if target.from_commit is None and server.rachel8_commit != target.to_commit:
            RolloutTarget.update(from_commit=server.rachel8_commit).where(
                RolloutTarget.id == target.id
            ).execute()
            target.from_commit = server.rachel8_commit
        return None

    def prepare(self, ssh: Target) -> str | None:
        """Install the target commit beside the running one; the failure's outcome, or None."""
        try:
            prepared = vps_update.prepare(
                ssh, self.target.to_commit, layout=self.layout, timeout=self.timeout
            )
        except VpsUpdateError as exc:
            return self.fail(f"prepare: {exc.code}: {exc.message}")
        if not prepared.ok:
            return self.fail(f"prepare failed: {stage_words(prepared)}")
        return None

    def still_wanted(self) -> str | None:
        """Why the prepared server must not be switched now, or None (a deprovision wins)."""
        server = Server.get_by_id(self.server.id)
        if server.status != Status.READY:
            return status_words(server.status)
        if server.update_claim != self.tid:
            return "the update's claim was taken away"
        if server.status_changed_at != self.server.status_changed_at:
            # It left ready and came back (a customer's new credentials were
            # injected): the release prepared holds the `.env` of before.
            return "the server was re-injected meanwhile; its next update prepares afresh"
        target = RolloutTarget.get_by_id(self.target.id)
        if target.state != TargetState.UPDATING:
            return f"the target became {target.state} before the switch"
        return None

    def switch(self, ssh: Target) -> str:
        target = self.target
        try:
            switched = vps_update.switch(
                ssh, target.to_commit, layout=self.layout, timeout=self.timeout
            )
        except VpsUpdateError as exc:
            return self.switch_back(ssh, f"switch: {exc.code}: {exc.message}")
        if not switched.ok:
            return self.switch_back(ssh, f"switch failed: {stage_words(switched)}")
        now = self.ctx.clock.now()
        Server.update(rachel8_commit=target.to_commit).where(
            (Server.id == self.server.id) & (Server.update_claim == self.tid)
        ).execute()
        moved = (
            RolloutTarget.update(state=TargetState.GATING.value, switched_at=now)
            .where(
                (RolloutTarget.id == target.id)
                & (RolloutTarget.state == TargetState.UPDATING.value)
            )
            .execute()
        )
        rollout = Rollout.get_by_id(target.rollout_id)
        self.count("switched")
        self.note(
            f"switched Rachel8 {short(target.from_commit)} -> {short(target.to_commit)}"
            f"{service_words(switched)}; health gate of {rollout.gate_seconds:.0f}s"
        )
        self.prune(ssh)
        return "gating" if moved else "switched; the target moved on meanwhile"

    def switch_back(self, ssh: Target, why: str) -> str:
        """The switch failed: back to the previous commit at once."""
        previous = self.target.from_commit
        if previous is None:
            return self.fail(f"{why}; no previous commit recorded to switch back to")
        try:
            back = vps_update.switch(ssh, previous, layout=self.layout, timeout=self.timeout)
        except VpsUpdateError as exc:
            return self.stranded(why, f"{exc.code}: {exc.message}")
        if not back.ok:
            return self.stranded(why, stage_words(back))
        Server.update(rachel8_commit=previous).where(Server.id == self.server.id).execute()
        return self.fail(f"{why}; switched back to {short(previous)}")

    def stranded(self, why: str, back: str) -> str:
        """Neither commit could be switched to: operators must look."""
        reason = f"{why}; switching back to {short(self.target.from_commit)} failed too: {back}"
        self.finish(TargetState.UPDATING, TargetState.ROLLBACK_FAILED, reason)
        self.release()
        self.count("rollback_failed")
        self.note(f"update failed, and the switch back too: {reason}", logging.ERROR)
        alert_operators(
            self.ctx.redis,
            self.server.id,
            "Rachel8 update: switch back failed",
            reason,
            "look at the server (rachel-cloud server diagnose); health repair may act again",
        )
        return f"rollback_failed: {reason}"

    def fail(self, reason: str) -> str:
        """The update failed with the previous commit still running."""
        self.finish(TargetState.UPDATING, TargetState.FAILED, reason)
        self.release()
        self.count("failed")
        self.note(f"update failed, nothing switched: {reason}", logging.WARNING)
        return f"failed: {reason}"

    def skip(self, reason: str) -> str:
        self.finish(TargetState.UPDATING, TargetState.SKIPPED, reason)
        self.count("skipped")
        self.note(f"update skipped: {reason}")
        return f"skipped: {reason}"

    def prune(self, ssh: Target) -> None:
        """Drop old release directories (best effort: a full disk shows in the heartbeats)."""
        try:
            pruned = vps_update.prune(ssh, RELEASES_KEPT, layout=self.layout, timeout=self.timeout)
        except VpsUpdateError as exc:
            self.slog.warning("prune: %s: %s; old releases left on disk", exc.code, exc.message)
            return
        if not pruned.ok:
            self.slog.warning("prune failed: %s; old releases left", stage_words(pruned))


def _not_updatable(server: Server, *, rerun: bool) -> str | None:
    """Why a server must not be updated now, or None (`rerun`: its health was judged)."""
    if server.status != Status.READY:
        return status_words(server.status)
    if server.health != HealthState.HEALTHY and not rerun:
        return f"not healthy ({server.health}: {server.health_reason or 'no heartbeat judged yet'})"
    return None
