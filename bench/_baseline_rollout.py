"""The replaced service's rollout, run by `bench/rollout.py` as its baseline.

Its design, as issue 23 describes it: fixed stages (10%, 50%, 100% of the
fleet, cumulative), 5 servers at a time, 10 s between stages, halting when
more than 30% of a stage failed, one rollout at a time. Its update engine,
per server: record the commit, `git pull`, `bun install`, restart, check the
unit, roll back to the recorded commit on failure. No health gate: a unit
that runs counts as updated.

Here it runs over the same SSH edge as ours, against the same simulated
fleet: `core.cloud.vps_update.prepare` (the clone and `bun install --frozen-
lockfile` of a release beside the running one: what `git pull` and `bun
install` cost, RACHEL_SIM_UPDATE_TIME on the simulator), `switch` (the
restart), then `core.cloud.rachel8_unit.check_service` in a session of its own
(the unit's check: running, and not restarted by systemd since). A failed
check switches back to the recorded commit. The recorded commit is the
server's row (`Server.rachel8_commit`), and the row says the new commit once
the check passed: the replaced service kept its own record; here it is ours,
so that our health task, still watching the fleet, sees no stranger commit.

The 5 sessions at a time are a pool (the next server starts as soon as one of
the 5 is done), which favours the baseline over batches of 5.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from core.cloud import vps_contract as vps
from core.cloud import vps_update
from core.cloud.rachel8_unit import check_service
from core.cloud.ssh import SSHError, Target
from core.cloud.vps_update import VpsUpdateError
from core.store.db import connection
from core.store.models import Server

#: The replaced service's stages (cumulative shares of the fleet).
STAGES = (0.1, 0.5, 1.0)
CONCURRENCY = 5
PAUSE_SECONDS = 10.0
HALT_SHARE = 0.3


@dataclass(frozen=True)
class Outcome:
    """One server's update by the baseline.

    Attributes:
        server_id: the server.
        stage: its stage (0 first).
        started, ended: epoch seconds.
        ok: updated and its unit checked.
        step: where it failed (`prepare`, `switch`, `check`), or None.
        rolled_back: switched back to the recorded commit after a failure.
        detail: the failure in words.
        recorded: the commit it ran before.
    """

    server_id: int
    stage: int
    started: float
    ended: float
    ok: bool
    step: str | None = None
    rolled_back: bool = False
    detail: str = ""
    recorded: str | None = None


@dataclass
class Run:
    """The baseline's rollout as it went."""

    started: float = 0.0
    ended: float = 0.0
    halted_at_stage: int | None = None
    stages: list[tuple[int, float, float]] = field(default_factory=list)  # (servers, start, end)
    outcomes: list[Outcome] = field(default_factory=list)


def stage_sizes(count: int, shares: Sequence[float] = STAGES) -> list[int]:
    """Servers in each stage: each takes the fleet up to ceil(share x count) in all."""
    sizes, done = [], 0
    for share in shares:
        upto = min(count, math.ceil(share * count))
        sizes.append(upto - done)
        done = upto
    return [s for s in sizes if s]


def arithmetic(count: int, update: float, pause: float = PAUSE_SECONDS) -> float:
    """The baseline's own arithmetic: each stage ceil(n/5) x update, a pause between stages."""
    sizes = stage_sizes(count)
    return sum(math.ceil(n / CONCURRENCY) * update for n in sizes) + pause * (len(sizes) - 1)


class Baseline:
    """Rolls `commit` out to `targets` (server id -> SSH target) as the replaced service did."""

    def __init__(
        self,
        targets: dict[int, Target],
        commit: str,
        *,
        layout: vps.Layout,
        pause: float,
        timeout: float = 30.0,
    ) -> None:
        self.targets = targets
        self.commit = commit
        self.layout = layout
        self.pause = pause
        self.timeout = timeout

    def run(self, max_stages: int | None = None) -> Run:
        """The whole rollout (or its first `max_stages` stages); blocks until it ends."""
        ids = sorted(self.targets)
        run = Run(started=time.time())
        done = 0
        for index, size in enumerate(stage_sizes(len(ids))):
            if max_stages is not None and index >= max_stages:
                break
            if index:
                time.sleep(self.pause)
            chunk = ids[done : done + size]
            done += size
            begun = time.time()
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                outcomes = list(pool.map(lambda sid, i=index: self._update(sid, i), chunk))
            run.stages.append((size, begun, time.time()))
            run.outcomes.extend(outcomes)
            failed = sum(1 for o in outcomes if not o.ok)
            if failed / size > HALT_SHARE:
                run.halted_at_stage = index
                break
        run.ended = time.time()
        return run

    def _update(self, server_id: int, stage: int) -> Outcome:
        started = time.time()
        target = self.targets[server_id]
        with connection():
            recorded = Server.get_by_id(server_id).rachel8_commit
        step = "prepare"
        try:
            prepared = vps_update.prepare(
                target, self.commit, layout=self.layout, timeout=self.timeout
            )
            if not prepared.ok:
                return self._failed(server_id, stage, started, step, prepared.describe(), False)
            step = "switch"
            switched = vps_update.switch(
                target, self.commit, layout=self.layout, timeout=self.timeout
            )
            if not switched.ok:
                raise VpsUpdateError(switched.describe())
            step = "check"
            check_service(target, timeout=self.timeout)
        except (VpsUpdateError, SSHError) as exc:
            back = step != "prepare" and self.switch_back(server_id, recorded)
            return self._failed(server_id, stage, started, step, str(exc), back)
        with connection():
            Server.update(rachel8_commit=self.commit).where(Server.id == server_id).execute()
        return Outcome(server_id, stage, started, time.time(), ok=True, recorded=recorded)

    def switch_back(self, server_id: int, recorded: str | None) -> bool:
        """Roll back to the recorded commit, and check the unit again (the row says it)."""
        if recorded is None:
            return False
        target = self.targets[server_id]
        try:
            back = vps_update.switch(target, recorded, layout=self.layout, timeout=self.timeout)
            if not back.ok:
                return False
            check_service(target, timeout=self.timeout)
        except (VpsUpdateError, SSHError):
            return False
        with connection():
            Server.update(rachel8_commit=recorded).where(Server.id == server_id).execute()
        return True

    @staticmethod
    def _failed(
        server_id: int, stage: int, started: float, step: str, detail: str, back: bool
    ) -> Outcome:
        return Outcome(
            server_id,
            stage,
            started,
            time.time(),
            ok=False,
            step=step,
            rolled_back=back,
            detail=detail[:300],
        )
