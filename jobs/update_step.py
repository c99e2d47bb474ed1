"""What the update and rollback jobs share: their target, its server, how a step is recorded.

`jobs.update` (the update, up to its gate) and `jobs.rollback` (the switch
back) each load a `RolloutTarget` and its server into a `TargetStep`, which
claims and releases the server (`Server.update_claim`), finds the SSH way in,
moves the target by compare-and-set, and records each step as an Event (kind
`update`) on the server's timeline and as an outcome counted for `/metrics`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from core.cloud import vps_contract as vps
from core.cloud.ssh import Target
from core.cloud.vps_update import StageResult
from core.domain.lifecycle import Status, record_event
from core.domain.rollout_claims import release_claim
from core.domain.rollout_metrics import count_outcome
from core.domain.rollout_states import TargetState
from core.domain.vps_access import target_for
from core.errors import CryptoError
from core.platform.logs import server_logger
from core.store.db import connection
from core.store.models import RolloutTarget, Server
from jobs.context import JobContext, context
from jobs.enqueue import enqueue_rollout_tick

#: The Event kind of every update and rollback step.
KIND = "update"


def run_step(step: type[TargetStep], target_id: int, *, in_flight: str) -> str:
    """Run `step`'s job on a target; its outcome.

    An outcome starting with `in_flight` leaves the target for the tick to judge
    (its gate); any other wakes the driver (a finished target frees room).
    """
    ctx = context()
    with connection():
        target = RolloutTarget.get_or_none(RolloutTarget.id == target_id)
        if target is None:
            return "skipped: no such rollout target"
        outcome = step(ctx, target).run()
    if not outcome.startswith(in_flight):
        enqueue_rollout_tick(ctx.redis, target.rollout_id)
    return outcome


class TargetStep(ABC):
    """What both jobs share: the target, its server, and how they record a step."""

    kind = "update"

    def __init__(self, ctx: JobContext, target: RolloutTarget) -> None:
        self.ctx = ctx
        self.target = target
        self.server: Server = Server.get_by_id(target.server_id)
        # The job's own module logs it (`jobs.update`, `jobs.rollback`).
        job_log = logging.getLogger(type(self).__module__)
        self.slog = server_logger(job_log, self.server.id, self.kind, target=target.id)
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
        release_claim(self.server.id, self.target.id)

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

    @abstractmethod
    def run(self) -> str:
        """Do the job's work; its outcome in words."""


def status_words(status: str) -> str:
    if status in (Status.DEPROVISIONING, Status.DELETED):
        return "deprovisioned"
    return f"not ready ({status})"


def short(commit: str | None) -> str:
    return commit[:12] if commit else "(unknown)"


def stage_words(result: StageResult) -> str:
    """A failed stage in one line: its step, exit status and the last line of its log."""
    return result.describe()


def service_words(result: StageResult) -> str:
    return f"; Rachel8 {result.service.describe()}" if result.service is not None else ""
