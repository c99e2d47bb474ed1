"""The reconciler: read Hetzner, the database and RQ, diff them, and (with apply) fix drift.

Report-only unless asked: `rachel-cloud reconcile --apply`, or
RACHEL_RECONCILE_APPLY for the scheduled run. Each fix re-checks what it is
about to touch just before touching it:

- an orphan is deleted only if Hetzner still shows our managed and
  environment labels on it, and no live server has claimed it meanwhile;
- a lost server is failed only if a lookup by its label still finds no VPS
  with its recorded id, and only by a compare-and-set on its status;
- a stuck server is failed or re-enqueued only if it is still in the same status.

Servers without our labels are never listed by the adapter, so never touched.
Findings are logged and, for servers we know, written to their timeline once
(not again on every run while the drift persists). Each run also rewrites
every server's current finding (`Server.drift`, shown by the fleet, the TUI
and the status API): set while the drift lasts and is not fixed, cleared when
a run no longer finds it (or the server changes status).
"""

from __future__ import annotations

import logging

from core.cloud.provider import LABEL_ENV, LABEL_MANAGED, HetznerError, ProviderServer
from core.domain import pool_store
from core.domain.image_store import live_views
from core.domain.lifecycle import Status, allowed, record_event, transition
from core.domain.pool import pool_row_of, vanished
from core.domain.reconcile import DbServer, Finding, Fix, Kind, Report, diff
from core.domain.sweep import RESUME_STEP
from core.platform.logs import server_logger
from core.platform.runs import RunSummary
from core.store.db import connection
from core.store.models import Event, Server
from jobs.context import JobContext, context
from jobs.jobscan import live_jobs
from jobs.outcomes import fail
from jobs.sweeper import resume
from jobs.taskrun import task_run

log = logging.getLogger(__name__)

EVENT_KIND = "reconcile"


def reconcile(apply: bool | None = None) -> str:
    """RQ job (cron): one reconcile pass; `apply` defaults to RACHEL_RECONCILE_APPLY."""
    ctx = context()
    with task_run(ctx.redis, "reconcile") as summary:
        if summary is None:
            return "skipped: already running"
        run(ctx, apply=ctx.settings.reconcile_apply if apply is None else apply, summary=summary)
        return summary.line()


def snapshot(ctx: JobContext) -> Report:
    """Read the three sides (the database first, see `core.reconcile.diff`) and diff them."""
    with connection():
        rows = list(Server.select().where(Server.status != Status.DELETED.value))
        images = {image.id: image for image in live_views()}
        pool = {row.id: row for row in pool_store.live_views()}
    vps = ctx.hetzner.list_managed()
    # Pool rows a VPS names that were not read above (made since, or deleted).
    labelled = {pool_row_of(p.labels) for p in vps}
    unread = {pid for pid in labelled if pid is not None and pid not in pool}
    if unread:
        with connection():
            pool |= {v.id: v for v in pool_store.views_of(unread)}
    live_ids = {row.id for row in rows}
    named = [p.server_id for p in vps if p.server_id is not None]
    named += [v.server_id for v in pool.values() if v.server_id is not None]
    claimed = [sid for sid in named if sid not in live_ids]
    if claimed:
        with connection():
            rows += list(Server.select().where(Server.id.in_(claimed)))
    servers = [DbServer.from_row(row) for row in rows]
    jobs = live_jobs(ctx.redis, also=[s.job_id for s in servers if s.job_id])
    return diff(vps, servers, jobs, ctx.clock.now(), ctx.settings, images=images, pool=pool)


def run(ctx: JobContext, *, apply: bool, summary: RunSummary | None = None) -> Report:
    """Diff, note each finding, and fix the actionable ones when `apply`."""
    summary = summary if summary is not None else RunSummary("reconcile")
    report = snapshot(ctx)
    with connection():
        pooled = pool_store.live_views()  # before the listing (`core.domain.pool.vanished`)
    by_provider = {p.id: p for p in ctx.hetzner.list_managed()} if apply else {}
    if apply:
        for gone in vanished(pooled, set(by_provider)):
            summary.found["pool_vanished"] += 1
            summary.details.append(f"pool server {gone.id}: {gone.reason} -> recycle")
            with connection():
                if pool_store.mark_recycling(gone.id, gone.reason, "cron", ctx.clock):
                    summary.acted["recycle"] += 1
    unresolved: list[Finding] = []
    with connection():
        for finding in report.findings:
            summary.found[finding.kind.value] += 1
            summary.details.append(f"{finding.kind}: {finding.reason} -> {finding.fix}")
            _note(ctx, finding, apply)
            if not apply or finding.fix == Fix.NONE:
                unresolved.append(finding)
                continue
            try:
                done = _fix(ctx, finding, by_provider)
            except HetznerError as exc:
                summary.errors += 1
                log.error("reconcile: could not %s (%s): %s", finding.fix, finding.reason, exc)
                done = None
            if done:
                summary.acted[finding.fix.value] += 1
                summary.details.append(f"  done: {done}")
            else:
                unresolved.append(finding)
        record_drift(unresolved)
    return report


#: Which finding a server shows when a run has several about it (the worst first).
_DRIFT_RANK = {Kind.LOST: 0, Kind.STUCK: 1, Kind.ORPHAN: 2}


def record_drift(findings: list[Finding]) -> None:
    """Make `Server.drift` say exactly what this run left unfixed (inside `connection()`).

    A finding is written only while the server is still in the status the run
    saw, so a server that moved on meanwhile is not marked with a stale finding.
    """
    current: dict[int, Finding] = {}
    for finding in sorted(findings, key=lambda f: _DRIFT_RANK[f.kind]):
        if finding.server_id is not None:
            current.setdefault(finding.server_id, finding)
    cleared = (
        Server.update(drift=None, drift_reason=None)
        .where(Server.drift.is_null(False) & Server.id.not_in(list(current) or [0]))
        .execute()
    )
    if cleared:
        log.info("reconcile: %s server(s) no longer drift", cleared)
    for server_id, finding in current.items():
        where = Server.id == server_id
        if finding.status is not None:
            where &= Server.status == finding.status
        Server.update(drift=finding.kind.value, drift_reason=finding.reason).where(where).execute()


def _note(ctx: JobContext, finding: Finding, apply: bool) -> None:
    mode = "fixing" if apply and finding.fix != Fix.NONE else "report only"
    log.warning(
        "reconcile found %s: %s (fix: %s, %s)", finding.kind, finding.reason, finding.fix, mode
    )
    if (
        finding.server_id is None
        or not Server.select().where(Server.id == finding.server_id).exists()
    ):
        return
    message = f"reconciler: {finding.kind}: {finding.reason} (fix: {finding.fix})"
    last = (
        Event.select(Event.message)
        .where((Event.server == finding.server_id) & (Event.kind == EVENT_KIND))
        .order_by(Event.id.desc())
        .first()
    )
    if last is None or last.message != message:
        record_event(finding.server_id, EVENT_KIND, message, actor="cron", clock=ctx.clock)


def _ours(vps: ProviderServer, env: str) -> bool:
    return vps.labels.get(LABEL_MANAGED) == "true" and vps.labels.get(LABEL_ENV) == env


def _fix(ctx: JobContext, finding: Finding, by_provider: dict[int, ProviderServer]) -> str | None:
    if finding.fix == Fix.DELETE:
        return _delete_orphan(ctx, finding, by_provider)
    assert finding.server_id is not None
    server = Server.get_or_none(Server.id == finding.server_id)
    if server is None or server.status != finding.status:
        log.info("reconcile: server %s changed meanwhile; left alone", finding.server_id)
        return None
    if finding.fix in (Fix.MARK_FAILED, Fix.FORGET):
        return _fix_lost(ctx, finding, server)
    if finding.fix == Fix.FAIL:
        moved = fail(
            ctx,
            server.id,
            Status(server.status),
            "stuck past its boot deadline with no deadline check queued (reconciler)",
            actor="cron",
        )
        return f"server {server.id}: failed" if moved else None
    if finding.fix == Fix.REQUEUE:
        return _requeue_stuck(ctx, server)
    return None


def _fix_lost(ctx: JobContext, finding: Finding, server: Server) -> str | None:
    slog = server_logger(log, server.id, server.status)
    found = ctx.hetzner.find_server(server.id)
    if found is not None and found.id == server.provider_id:
        slog.info("reconcile: Hetzner server %s is there after all", found.id)
        return None
    message = f"Hetzner server {server.provider_id} is gone (found by the reconciler)"
    if finding.fix == Fix.FORGET:
        (
            Server.update(provider_id=None, ipv4=None, ipv6=None, host_key=None)
            .where((Server.id == server.id) & (Server.status == Status.FAILED.value))
            .execute()
        )
        record_event(server.id, EVENT_KIND, f"{message}; forgotten", actor="cron", clock=ctx.clock)
        return f"server {server.id}: forgot the missing Hetzner server {finding.provider_id}"
    if not allowed(server.status, Status.FAILED):
        slog.error(
            "reconcile: %s; the lifecycle has no %s -> failed, an operator must decide "
            "(rachel-cloud deprovision %s)",
            message,
            server.status,
            server.id,
        )
        return None
    moved = transition(
        server.id,
        server.status,
        Status.FAILED,
        message=message,
        actor="cron",
        changes={
            "failed_phase": server.status,
            "last_error": message,
            "deadline_at": None,
            "provider_id": None,
            "ipv4": None,
            "ipv6": None,
        },
        clock=ctx.clock,
        publish=ctx.publish,
    )
    if moved:
        slog.error("reconcile: %s; marked failed (rachel-cloud retry %s)", message, server.id)
    return f"server {server.id}: marked failed" if moved else None


def _requeue_stuck(ctx: JobContext, server: Server) -> str:
    if server.status == Status.DEPROVISIONING:
        # It gave up its retries; a stuck deprovision gets a fresh set.
        Server.update(retries=0, throttled=0).where(
            (Server.id == server.id) & (Server.status == Status.DEPROVISIONING.value)
        ).execute()
        server.retries = server.throttled = 0
    step = RESUME_STEP[server.status]
    jid = resume(ctx, server, step)
    message = f"stuck: re-enqueued {step} as {jid}"
    record_event(server.id, EVENT_KIND, message, actor="cron", clock=ctx.clock)
    server_logger(log, server.id, server.status).warning("reconcile: %s", message)
    return f"server {server.id}: re-enqueued {step}"


def _delete_orphan(
    ctx: JobContext, finding: Finding, by_provider: dict[int, ProviderServer]
) -> str | None:
    assert finding.provider_id is not None
    vps = by_provider.get(finding.provider_id)
    if vps is None or not _ours(vps, ctx.hetzner.env):
        log.error(
            "reconcile: Hetzner server %s no longer carries our labels (or is gone); not deleted",
            finding.provider_id,
        )
        return None
    if vps.server_id is not None:
        row = Server.get_or_none(Server.id == vps.server_id)
        if row is not None and row.status != Status.DELETED and row.provider_id == vps.id:
            log.info("reconcile: server %s claimed Hetzner server %s meanwhile", row.id, vps.id)
            return None
    deleted = ctx.hetzner.delete_server(vps.id)
    what = (
        f"deleted orphan Hetzner server {vps.id} ({vps.name})"
        if deleted
        else (f"orphan Hetzner server {vps.id} was already gone")
    )
    log.warning("reconcile: %s", what)
    if vps.server_id is not None and Server.get_or_none(Server.id == vps.server_id) is not None:
        record_event(vps.server_id, EVENT_KIND, what, actor="cron", clock=ctx.clock)
    return what


def report_kinds(report: Report) -> dict[str, int]:
    """Counts of findings by kind (for the CLI's summary line)."""
    return {kind.value: len(report.of(kind)) for kind in Kind}
