"""The reconciler against the simulator: drift planted on Hetzner and in the database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import peewee
import redis
from hcloud.images import Image
from hcloud.server_types import ServerType

from core.cloud.provider import LABEL_CUSTOMER, LABEL_ENV, LABEL_MANAGED, LABEL_SERVER
from core.domain.reconcile import Fix, Kind
from core.platform.clock import ManualClock, utcnow
from core.store.models import Event, Server
from jobs import reconcile
from jobs.jobscan import live_jobs
from tests import factories
from tests.pipeline.harness import Stack

REPO = Path(__file__).resolve().parents[2]


def plant_vps(stack: Stack, name: str, labels: dict[str, str]) -> int:
    response = stack.ctx.hetzner.client.servers.create(
        name=name,
        server_type=ServerType(name="cx23"),
        image=Image(name="debian-12"),
        labels=labels,  # type: ignore[arg-type]
    )
    return int(response.server.id or 0)


def ours(server_id: int, env: str = "test") -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_ENV: env,
        LABEL_SERVER: str(server_id),
        LABEL_CUSTOMER: "1",
    }


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def all_vps(stack: Stack) -> set[int]:
    return {int(s.id or 0) for s in stack.ctx.hetzner.client.servers.get_all()}


class Planted:
    """Each kind of drift, plus servers that must never be touched."""

    def __init__(self, stack: Stack) -> None:
        now = utcnow()
        owner = factories.customer
        # In agreement: a ready server and its VPS.
        self.good = factories.server(owner(), status="ready", name="test-good")
        self.good_vps = plant_vps(stack, "test-good", ours(self.good.id))
        Server.update(provider_id=self.good_vps).where(Server.id == self.good.id).execute()
        # Orphans: a VPS for a server id the database does not have, and one whose
        # server was deleted.
        self.orphan_vps = plant_vps(stack, "test-orphan", ours(90001))
        self.deleted = factories.server(owner(), status="deleted", name="test-deleted")
        self.deleted_vps = plant_vps(stack, "test-deleted-vps", ours(self.deleted.id))
        # Not ours: no labels at all, and managed labels of another environment.
        self.bare_vps = plant_vps(stack, "someone-elses", {})
        self.foreign_vps = plant_vps(stack, "other-env", ours(90002, env="prod"))
        # Lost: live in the database, gone from Hetzner.
        self.lost = factories.server(
            owner(), status="injecting_secrets", name="test-lost", provider_id=987654
        )
        # Stuck: past the boot deadline without its check; pending for an hour, no job.
        self.stuck_boot = factories.server(
            owner(), status="cloud_init", name="test-stuck-boot", attempt=1
        )
        self.stuck_boot_vps = plant_vps(stack, "test-stuck-boot", ours(self.stuck_boot.id))
        Server.update(
            provider_id=self.stuck_boot_vps, deadline_at=now - timedelta(minutes=5)
        ).where(Server.id == self.stuck_boot.id).execute()
        self.stuck_pending = factories.server(
            owner(),
            status="pending",
            name="test-stuck-pending",
            status_changed_at=now - timedelta(hours=1),
        )


def run_cli(
    stack: Stack, database_url: str, redis_url: str, *args: str, command: str = "reconcile"
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RACHEL_", "HCLOUD_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        HCLOUD_ENDPOINT=stack.sim.endpoint,
        RACHEL_NAME_PREFIX="test",
        RACHEL_MASTER_KEYS=",".join(stack.settings.master_keys or ()),
        RACHEL_DATA_DIR=str(stack.settings.data_dir),
        PYTHONPATH=str(REPO),
    )
    return subprocess.run(  # noqa: PLW1510 - the tests read returncode
        [sys.executable, "-m", "cli.main", command, *args],
        cwd=stack.settings.data_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_reconciler_reports_without_acting_then_fixes_with_apply(stack: Stack) -> None:
    planted = Planted(stack)
    stack.ctx.clock = ManualClock(utcnow())
    before = all_vps(stack)

    report = reconcile.run(stack.ctx, apply=False)
    found = {(f.kind, f.server_id, f.provider_id, f.fix) for f in report.findings}
    # The VPSs were created just now: orphans are reported, but too young to delete.
    assert found == {
        (Kind.ORPHAN, 90001, planted.orphan_vps, Fix.NONE),
        (Kind.ORPHAN, planted.deleted.id, planted.deleted_vps, Fix.NONE),
        (Kind.LOST, planted.lost.id, 987654, Fix.MARK_FAILED),
        (Kind.STUCK, planted.stuck_boot.id, planted.stuck_boot_vps, Fix.FAIL),
        (Kind.STUCK, planted.stuck_pending.id, None, Fix.REQUEUE),
    }
    # Report only: nothing changed anywhere.
    stack.ctx.clock.advance(3600)  # past the orphan safety age
    report = reconcile.run(stack.ctx, apply=False)
    assert {f.fix for f in report.of(Kind.ORPHAN)} == {Fix.DELETE}
    assert all_vps(stack) == before
    assert Server.get_by_id(planted.lost.id).status == "injecting_secrets"
    assert Server.get_by_id(planted.stuck_boot.id).status == "cloud_init"
    assert Server.get_by_id(planted.stuck_pending.id).status == "pending"
    assert live_jobs(stack.redis) == {}
    # Each finding is on its server's timeline once, however many runs see it.
    notes = Event.select().where((Event.server == planted.lost.id) & (Event.kind == "reconcile"))
    assert notes.count() == 1 and "records Hetzner server 987654" in notes[0].message

    report = reconcile.run(stack.ctx, apply=True)
    assert len(report.findings) == 5
    wait_for(
        lambda: not {planted.orphan_vps, planted.deleted_vps} & all_vps(stack), "orphans deleted"
    )
    after = all_vps(stack)
    assert {planted.good_vps, planted.bare_vps, planted.foreign_vps} <= after
    lost = Server.get_by_id(planted.lost.id)
    assert lost.status == "failed" and "987654 is gone" in (lost.last_error or "")
    assert Server.get_by_id(planted.stuck_boot.id).status == "failed"
    pending = Server.get_by_id(planted.stuck_pending.id)
    assert pending.status == "pending" and pending.job_id
    assert {j.step for j in live_jobs(stack.redis)[pending.id]} == {"creating"}
    assert Server.get_by_id(planted.good.id).status == "ready"
    # The stuck cloud_init server's cleanup deletes its VPS; the pending one gets created.
    stack.drain(
        lambda: (
            planted.stuck_boot_vps not in all_vps(stack)
            and stack.status(pending.id) == "cloud_init"
        ),
        what="cleanup and the re-enqueued creation",
    )
    assert {planted.good_vps, planted.bare_vps, planted.foreign_vps} <= all_vps(stack)


def test_reconcile_cli_json_and_apply(
    stack: Stack,
    database_url: str,
    redis_server_url: str,
    db: peewee.Database,
    redis_client: redis.Redis,
) -> None:
    orphan = plant_vps(stack, "test-cli-orphan", ours(90003))
    bare = plant_vps(stack, "cli-unlabelled", {})
    out = run_cli(stack, database_url, redis_server_url, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["counts"] == {"orphan": 1, "lost": 0, "stuck": 0} and data["applied"] is False
    assert data["findings"][0]["provider_id"] == orphan
    assert data["findings"][0]["fix"] == "none"  # younger than the safety age
    text = run_cli(stack, database_url, redis_server_url)
    assert text.returncode == 0 and "orphan" in text.stdout and "1 findings" in text.stdout
    stack_env_apply = run_cli(stack, database_url, redis_server_url, "--apply")
    assert stack_env_apply.returncode == 0, stack_env_apply.stderr
    assert orphan in all_vps(stack)  # too young: --apply leaves it
    bad = run_cli(stack, database_url, redis_server_url, "--aply")
    assert bad.returncode == 2 and "No such option" in bad.stderr
    assert "Traceback" not in bad.stderr + bad.stdout
    assert bare in all_vps(stack)


def test_a_lost_ready_server_is_failed_and_the_run_is_on_the_audit_trail(stack: Stack) -> None:
    owner = factories.paying_customer(stack.ring)
    lost = factories.server(
        owner, status="ready", provider_id=555555, ipv4="127.0.0.9", name="test-lost-ready"
    )
    line = reconcile.reconcile(apply=True)
    assert "lost 1" in line
    row = Server.get_by_id(lost.id)
    assert row.status == "failed" and row.failed_phase == "ready" and row.provider_id is None
    summaries = list(Event.select().where(Event.server.is_null() & (Event.kind == "cron")))
    assert [e.message for e in summaries] == [line] and summaries[0].actor == "cron"
    # A run that finds nothing leaves the audit trail alone (its summary is in Redis).
    reconcile.reconcile(apply=True)
    assert Event.select().where(Event.server.is_null()).count() == 1
