"""The sweeper's pure decisions: lost work to re-enqueue, abandoned executions."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.domain.reconcile import ActiveJob, DbServer
from core.domain.sweep import Execution, abandoned, plan
from core.platform.settings import Settings
from tests.conftest import make_settings

NOW = datetime(2026, 3, 1, 12, 0, 0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, RACHEL_ORPHAN_MIN_AGE="30m", RACHEL_SWEEP_GRACE="30s")


def row(sid: int, status: str, provider_id: int | None = None, **fields: object) -> DbServer:
    values: dict[str, object] = {"status_changed_at": NOW - timedelta(hours=1), "attempt": 1}
    values.update(fields)
    return DbServer(id=sid, status=status, provider_id=provider_id, **values)  # type: ignore[arg-type]


def test_sweep_plan(settings: Settings) -> None:
    servers = [
        row(1, "pending"),
        row(2, "creating", status_changed_at=NOW - timedelta(seconds=10)),  # just moved
        row(3, "cloud_init", 33, deadline_at=NOW + timedelta(minutes=5)),
        row(4, "injecting_secrets", 44, job_id="srv4-finalize-a1-r0"),
        row(5, "deprovisioning", retries=6, last_error="server_error"),  # gave up
        row(6, "deprovisioning"),
        row(7, "ready", 77),
        row(8, "injecting_secrets", 88),
    ]
    jobs = {8: [ActiveJob("srv8-injecting_secrets-a1-r0", 8, "injecting_secrets", 1, "started")]}
    got = {(r.server_id, r.step) for r in plan(servers, jobs, NOW, settings)}
    assert got == {(1, "creating"), (3, "boot-deadline"), (4, "finalize"), (6, "deprovisioning")}


def test_abandoned_executions() -> None:
    def ex(expires: float, beat: float | None, alive: bool | None) -> Execution:
        return Execution("j", "j:e", "w1", expires, beat, alive)

    now = 1000.0
    assert abandoned(ex(999, 990, True), now, 40) == "its heartbeat expired"
    assert abandoned(ex(1090, 990, False), now, 40) == "worker w1 is gone"
    assert abandoned(ex(1090, 900, True), now, 40) is None  # alive on this host: trust it
    assert abandoned(ex(1090, 970, None), now, 40) is None
    assert abandoned(ex(1090, 950, None), now, 40) == "worker w1 silent for 50s"
