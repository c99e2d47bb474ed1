"""The reconciler's diff: each kind of drift found, with its fix; job ids parsed."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.cloud.provider import LABEL_ENV, LABEL_MANAGED, LABEL_SERVER, ProviderServer
from core.domain.reconcile import ActiveJob, DbServer, Fix, Kind, diff, parse_job_id
from core.platform.settings import Settings
from tests.conftest import make_settings

NOW = datetime(2026, 3, 1, 12, 0, 0)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, RACHEL_ORPHAN_MIN_AGE="30m", RACHEL_SWEEP_GRACE="30s")


def vps(pid: int, server_id: int | None, minutes_old: float = 120, **labels: str) -> ProviderServer:
    tags = {LABEL_MANAGED: "true", LABEL_ENV: "test"}
    if server_id is not None:
        tags[LABEL_SERVER] = str(server_id)
    tags.update(labels)
    created = (NOW - timedelta(minutes=minutes_old)).isoformat() + "+00:00"
    return ProviderServer(pid, f"test-{server_id}", "running", None, None, tags, created)


def row(sid: int, status: str, provider_id: int | None = None, **fields: object) -> DbServer:
    values: dict[str, object] = {"status_changed_at": NOW - timedelta(hours=1), "attempt": 1}
    values.update(fields)
    return DbServer(id=sid, status=status, provider_id=provider_id, **values)  # type: ignore[arg-type]


def test_diff_finds_each_kind_with_its_fix(settings: Settings) -> None:
    provider = [
        vps(100, 1),  # matches server 1: fine
        vps(200, 99),  # no such server: orphan, old enough
        vps(300, 98, minutes_old=5),  # orphan, too young
        vps(400, 1),  # duplicate of server 1
        vps(500, 7),  # server 7 is deleted
        vps(600, 5),  # server 5 is creating with no provider id yet: fine
    ]
    db = [
        row(1, "ready", 100),
        row(2, "ready", 222),  # lost
        row(3, "cloud_init", 333, deadline_at=NOW - timedelta(minutes=1)),  # lost beats stuck
        row(4, "pending"),  # stuck: 1 h in pending, no job
        row(5, "creating", status_changed_at=NOW - timedelta(minutes=1)),
        row(6, "failed", 666),  # lost, failed: forget
        row(7, "deleted", 500),
        row(8, "deprovisioning", status_changed_at=NOW - timedelta(hours=2)),  # stuck
        row(9, "pending"),  # has its job: fine
    ]
    jobs = {9: [ActiveJob("srv9-creating-a0-r0", 9, "creating", 0, "rate_limited")]}
    report = diff(provider, db, jobs, NOW, settings)
    got = {(f.kind, f.server_id, f.provider_id, f.fix) for f in report.findings}
    assert got == {
        (Kind.ORPHAN, 99, 200, Fix.DELETE),
        (Kind.ORPHAN, 98, 300, Fix.NONE),
        (Kind.ORPHAN, 1, 400, Fix.DELETE),
        (Kind.ORPHAN, 7, 500, Fix.DELETE),
        (Kind.LOST, 2, 222, Fix.MARK_FAILED),
        (Kind.LOST, 3, 333, Fix.MARK_FAILED),
        (Kind.LOST, 6, 666, Fix.FORGET),
        (Kind.STUCK, 4, None, Fix.REQUEUE),
        (Kind.STUCK, 8, None, Fix.REQUEUE),
    }
    assert all(f.reason for f in report.findings)
    assert report.as_dict()["counts"] == {"orphan": 4, "lost": 3, "stuck": 2}


def test_diff_stuck_cloud_init_needs_its_attempts_deadline_check(settings: Settings) -> None:
    late = row(3, "cloud_init", 333, deadline_at=NOW - timedelta(seconds=5))
    on_hetzner = [vps(333, 3)]
    old_check = {3: [ActiveJob("x", 3, "boot-deadline", 0, "scheduled")]}
    report = diff(on_hetzner, [late], old_check, NOW, settings)
    assert [(f.kind, f.fix) for f in report.findings] == [(Kind.STUCK, Fix.FAIL)]
    check = {3: [ActiveJob("x", 3, "boot-deadline", 1, "scheduled")]}
    assert diff(on_hetzner, [late], check, NOW, settings).findings == ()
    early = row(3, "cloud_init", 333, deadline_at=NOW + timedelta(seconds=5))
    assert diff(on_hetzner, [early], {}, NOW, settings).findings == ()


def test_job_ids_parse_with_and_without_entry_stamp() -> None:
    assert parse_job_id("srv12-boot-deadline-a3-r1") == ActiveJob(
        "srv12-boot-deadline-a3-r1", 12, "boot-deadline", 3, "queued"
    )
    parsed = parse_job_id("srv4-injecting_secrets-a1-e1767268800000-r0", "started")
    assert parsed is not None and (parsed.server_id, parsed.step, parsed.attempt) == (
        4,
        "injecting_secrets",
        1,
    )
    assert parse_job_id("0f9c2a-cron-uuid") is None
