"""Per-server Rachel8 updates and rollbacks: one RQ job each, on the `rc-update` queue.

The rollout driver (`jobs.rollout`) moves a target to `updating` and queues
`enqueue_update`; once a target must go back (its gate failed, or the
rollout halted) it moves it to `rolling_back` and queues `enqueue_rollback`.
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
   and releases the claim. A switch that fails is switched back at once.

`rollback_server` switches a `rolling_back` target's server back to its
`from_commit` (the row's commit with it) and stamps `rollback_at` with the
time of the switch; the tick passes it at the first healthy heartbeat of that
commit (`rollout_gate.judge_rollback`). A rollback that cannot switch back is
`rollback_failed`, the claim is released (health repair may act again) and
operators are alerted.

Every step is an Event (kind `update`) on the server's timeline and an outcome
counted for `/metrics` (`core.domain.rollout_metrics`).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from rq import Retry
from rq.exceptions import DuplicateJobError
from rq.job import JobStatus

from core.cloud import vps_contract as vps
from core.cloud import vps_update
from core.cloud.ssh import Target
from core.cloud.vps_update import StageResult, VpsUpdateError
from core.domain.health import HealthState
from core.domain.lifecycle import Status, record_event
from core.domain.rollout_metrics import count_outcome
from core.domain.rollouts import RolloutState, TargetState
from core.domain.vps_access import target_for
from core.errors import CryptoError
from core.platform.logs import server_logger
from core.store.db import connection
from core.store.models import Rollout, RolloutTarget, Server
from jobs.context import JobContext, context
from jobs.enqueue import enqueue_rollout_tick
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

log = logging.getLogger(__name__)

#: Release directories a VPS keeps in all (`prune`): the current, the previous, the newest.
RELEASES_KEPT = 3
#: Time limit of one job: a prepare clones and installs (minutes on a slow box).
UPDATE_JOB_TIMEOUT = 1800
#: Rollout states in which an update may still switch a server.
SWITCHING = frozenset({RolloutState.RUNNING, RolloutState.PAUSED})
#: Job statuses of a job still to run or running: enqueueing it again does nothing.
_LIVE = frozenset({JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED})
#: The Event kind of every update and rollback step.
KIND = "update"


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
    ctx = context()
    with connection():
        target = RolloutTarget.get_or_none(RolloutTarget.id == target_id)
        if target is None:
            return "skipped: no such rollout target"
        outcome = _Update(ctx, target).run()
    if not outcome.startswith("gating"):
        # A finished target lets the driver start the next one without waiting for its tick.
        enqueue_rollout_tick(ctx.redis, target.rollout_id)
    return outcome


class _Step:
    """What both jobs share: the target, its server, and how they record a step."""

    kind = "update"

    def __init__(self, ctx: JobContext, target: RolloutTarget) -> None:
        self.ctx = ctx
        self.target = target
        self.server: Server = Server.get_by_id(target.server_id)
        self.slog = server_logger(log, self.server.id, self.kind, target=target.id)
        self.layout = vps.Layout(ctx.settings.rachel8_user)
        #: Seconds to connect and per SSH request (a stage itself may run for minutes).
        self.timeout = ctx.settings.inject_timeout_seconds

    @property
    def tid(self) -> str:
        return str(self.target.id)

    def note(self, message: str, level: int = logging.INFO) -> None:
        """An Event on the server's timeline, and the same line in the log."""
        record_event(self.server.id, KIND, message, clock=self.ctx.clock)
        self.slog.log(level, "%s", message)

    def finish(self, source: TargetState, state: TargetState, reason: str, **changes: Any) -> bool:
        """Move the target from `source` to a final `state` with `reason` (compare-and-set)."""
        values = {"state": state.value, "reason": reason, "finished_at": self.ctx.clock.now()}
        values.update(changes)
        moved = (
            RolloutTarget.update(values)
            .where((RolloutTarget.id == self.target.id) & (RolloutTarget.state == source.value))
            .execute()
        )
        return bool(moved)

    def release(self) -> None:
        """Give the claim back (only ours: a deprovision may have cleared it already)."""
        Server.update(update_claim=None, update_claimed_at=None).where(
            (Server.id == self.server.id) & (Server.update_claim == self.tid)
        ).execute()

    def claim(self) -> bool:
        """Take the server for this target (or find it already ours: a re-run)."""
        taken = (
            Server.update(update_claim=self.tid, update_claimed_at=self.ctx.clock.now())
            .where(
                (Server.id == self.server.id)
                & (Server.status == Status.READY.value)
                & (Server.update_claim.is_null() | (Server.update_claim == self.tid))
            )
            .execute()
        )
        return bool(taken)

    def ssh(self) -> tuple[Target | None, str]:
        """Where to connect, or None and why not."""
        try:
            found = target_for(self.server, self.ctx.keyring, self.ctx.settings)
        except CryptoError as exc:
            return None, f"{exc.code}: the server's SSH key cannot be opened"
        if found is None:
            return None, "no address or pinned host key recorded"
        return found, ""

    def count(self, outcome: str) -> None:
        count_outcome(self.ctx.redis, self.kind, outcome)


class _Update(_Step):
    kind = "update"

    def run(self) -> str:
        target = self.target
        if target.state != TargetState.UPDATING:
            return f"skipped: the target is {target.state}"
        why_not = self.why_not()
        if why_not is not None:
            return self.skip(why_not)
        self.note(
            f"updating Rachel8 {_short(target.from_commit)} -> {_short(target.to_commit)} "
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
                return _status_words(fresh.status)
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
            return self.fail(f"prepare failed: {_stage_words(prepared)}")
        return None

    def still_wanted(self) -> str | None:
        """Why the prepared server must not be switched now, or None (a deprovision wins)."""
        server = Server.get_by_id(self.server.id)
        if server.status != Status.READY:
            return _status_words(server.status)
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
            return self.switch_back(ssh, f"switch failed: {_stage_words(switched)}")
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
            f"switched Rachel8 {_short(target.from_commit)} -> {_short(target.to_commit)}"
            f"{_service_words(switched)}; health gate of {rollout.gate_seconds:.0f}s"
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
            return self.stranded(why, _stage_words(back))
        Server.update(rachel8_commit=previous).where(Server.id == self.server.id).execute()
        return self.fail(f"{why}; switched back to {_short(previous)}")

    def stranded(self, why: str, back: str) -> str:
        """Neither commit could be switched to: operators must look."""
        reason = f"{why}; switching back to {_short(self.target.from_commit)} failed too: {back}"
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
            self.slog.warning("prune failed: %s; old releases left", _stage_words(pruned))


def _not_updatable(server: Server, *, rerun: bool) -> str | None:
    """Why a server must not be updated now, or None (`rerun`: its health was judged)."""
    if server.status != Status.READY:
        return _status_words(server.status)
    if server.health != HealthState.HEALTHY and not rerun:
        return f"not healthy ({server.health}: {server.health_reason or 'no heartbeat judged yet'})"
    return None


def _status_words(status: str) -> str:
    if status in (Status.DEPROVISIONING, Status.DELETED):
        return "deprovisioned"
    return f"not ready ({status})"


# --- the rollback --------------------------------------------------------------------


def rollback_server(target_id: int) -> str:
    """RQ job: switch one server of a rollout back to the commit it ran before."""
    ctx = context()
    with connection():
        target = RolloutTarget.get_or_none(RolloutTarget.id == target_id)
        if target is None:
            return "skipped: no such rollout target"
        outcome = _Rollback(ctx, target).run()
    if not outcome.startswith("switched back"):
        enqueue_rollout_tick(ctx.redis, target.rollout_id)
    return outcome


class _Rollback(_Step):
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
        gone = _status_words(self.server.status)
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
            return self.failed(f"switch back failed: {_stage_words(back)}")
        Server.update(rachel8_commit=previous).where(Server.id == self.server.id).execute()
        RolloutTarget.update(rollback_at=self.ctx.clock.now()).where(
            (RolloutTarget.id == target.id)
            & (RolloutTarget.state == TargetState.ROLLING_BACK.value)
        ).execute()
        self.count("switched_back")
        self.note(
            f"rolled Rachel8 back {_short(target.to_commit)} -> {_short(previous)}"
            f"{_service_words(back)} ({target.reason or 'the rollout halted'}); "
            "waiting for a healthy heartbeat"
        )
        return f"switched back to {_short(previous)}"

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
            f"{reason} (it should run {_short(self.target.from_commit)}, "
            f"not {_short(self.target.to_commit)})",
            "look at the server (rachel-cloud server diagnose); `rachel-cloud rollout "
            "rollback` tries again",
        )
        return f"rollback_failed: {reason}"


# --- words ---------------------------------------------------------------------------


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "(unknown)"


def _stage_words(result: StageResult) -> str:
    """A failed stage in one line: its step, exit status and the last line of its log."""
    return result.describe()


def _service_words(result: StageResult) -> str:
    return f"; Rachel8 {result.service.describe()}" if result.service is not None else ""
