"""The reconciler's diff: Hetzner vs. the database vs. the job queues, as a pure function.

`diff` compares three snapshots taken by `jobs.reconcile` and returns a
`Report` of drift, each finding with its reason and the fix it would apply:

- orphan: a VPS carrying our managed and environment labels that no live
  server in the database accounts for (no row, a deleted row, a duplicate of
  the row's recorded VPS, or a row that records none and is past creating).
  Fix: delete it, but only once Hetzner created it at least
  RACHEL_ORPHAN_MIN_AGE ago; younger ones are reported and left alone.
- lost: a live server whose recorded VPS is not on Hetzner any more.
  Fix: mark it failed (so it can be retried); a failed server just forgets it.
- stuck: a server in an in-flight phase past its phase deadline (cloud_init:
  its boot deadline; others: RACHEL_PHASE_LIMITS) with no job queued,
  scheduled, rate-limited or running for it. Fix: cloud_init is failed (its
  cleanup deletes the VPS); the others have their step re-enqueued.

An image builder (`core.domain.images`: labelled a builder, no server id) is
no customer's: it is an orphan only once its build is over or past its time
limit (`builder_finding`), and then deleted at once, whatever its age.

A warm pool server (`core.domain.pool`: labelled with its pool row, no
server id) is the pool's while its row owns it; once claimed it is judged
as the VPS of the Server that claimed it; any other (its row recycled,
deleted or unknown) is an orphan, deleted at once (`pool_finding`).

Servers without our labels never reach this module: the adapter lists only
servers labelled managed for our environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from core.cloud.provider import LABEL_SERVER, ProviderServer
from core.domain.images import ImageView, builder_finding, image_of_builder
from core.domain.pool import PoolServerView, pool_finding, pool_row_of
from core.platform.settings import Settings
from core.store.models import Server


class Kind(StrEnum):
    """The kinds of drift."""

    ORPHAN = "orphan"
    LOST = "lost"
    STUCK = "stuck"


class Fix(StrEnum):
    """What `--apply` does about a finding."""

    DELETE = "delete"  # delete the orphan VPS
    MARK_FAILED = "mark_failed"  # the server's VPS is gone: fail it
    FORGET = "forget"  # a failed server's VPS is gone: clear the stale provider id
    FAIL = "fail"  # stuck in cloud_init past the boot deadline
    REQUEUE = "requeue"  # stuck without a job: enqueue its step again
    NONE = "none"  # report only (e.g. an orphan younger than the safety age)


#: The job steps that carry a server forward from each in-flight status.
PHASE_STEPS: Mapping[str, frozenset[str]] = {
    "pending": frozenset({"creating"}),
    "creating": frozenset({"creating"}),
    "cloud_init": frozenset({"boot-deadline"}),
    "injecting_secrets": frozenset({"injecting_secrets", "finalize"}),
    "deprovisioning": frozenset({"deprovisioning"}),
}
#: Statuses in which a live server may not (yet, or any more) record its VPS.
MAY_LACK_VPS = frozenset({"pending", "creating", "deprovisioning"})
#: Statuses whose recorded VPS must exist.
HOLDS_VPS = frozenset({"creating", "cloud_init", "injecting_secrets", "ready", "failed"})

_JOB_ID = re.compile(r"^srv(?P<server>\d+)-(?P<step>[a-z_-]+?)-a(?P<attempt>\d+)(?:-e\d+)?-r\d+$")


@dataclass(frozen=True)
class ActiveJob:
    """A job queued, scheduled, deferred, rate-limited or running for a server."""

    job_id: str
    server_id: int
    step: str
    attempt: int
    status: str


def parse_job_id(job_id: str, status: str = "queued") -> ActiveJob | None:
    """The server, step and attempt of one of our job ids (None for other jobs)."""
    match = _JOB_ID.match(job_id)
    if match is None:
        return None
    return ActiveJob(job_id, int(match["server"]), match["step"], int(match["attempt"]), status)


@dataclass(frozen=True)
class DbServer:
    """What the reconciler needs of a server row."""

    id: int
    status: str
    provider_id: int | None
    attempt: int
    status_changed_at: datetime
    deadline_at: datetime | None = None
    name: str | None = None
    retries: int = 0
    throttled: int = 0  # of the retries, rate-limit waits (not counted)
    job_id: str | None = None
    last_error: str | None = None

    @classmethod
    def from_row(cls, row: Server) -> DbServer:
        return cls(
            id=row.id,
            status=row.status,
            provider_id=row.provider_id,
            attempt=row.attempt,
            status_changed_at=row.status_changed_at,
            deadline_at=row.deadline_at,
            name=row.name,
            retries=row.retries,
            throttled=row.throttled,
            job_id=row.job_id,
            last_error=row.last_error,
        )


@dataclass(frozen=True)
class Finding:
    """One piece of drift, why it is drift, and what `--apply` does about it."""

    kind: Kind
    reason: str
    fix: Fix
    server_id: int | None = None
    provider_id: int | None = None
    status: str | None = None
    name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kind"], data["fix"] = self.kind.value, self.fix.value
        return data


@dataclass(frozen=True)
class Report:
    """Everything a reconcile pass found."""

    at: datetime
    findings: tuple[Finding, ...]
    provider_servers: int
    db_servers: int

    def of(self, kind: Kind) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    @property
    def actionable(self) -> list[Finding]:
        return [f for f in self.findings if f.fix != Fix.NONE]

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "provider_servers": self.provider_servers,
            "db_servers": self.db_servers,
            "counts": {kind.value: len(self.of(kind)) for kind in Kind},
            "findings": [f.as_dict() for f in self.findings],
        }


def created_at(server: ProviderServer) -> datetime | None:
    """When Hetzner created the server (naive UTC), if it said."""
    if not server.created:
        return None
    try:
        when = datetime.fromisoformat(server.created.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when


def has_job(server: DbServer, jobs: Iterable[ActiveJob]) -> bool:
    """Whether a job that carries `server` forward from its status is alive."""
    steps = PHASE_STEPS.get(server.status, frozenset())
    for job in jobs:
        if job.step not in steps:
            continue
        if job.step == "boot-deadline" and job.attempt != server.attempt:
            continue
        return True
    return False


def phase_deadline(server: DbServer, settings: Settings) -> datetime | None:
    """When `server` has been in its phase too long (None: the phase has no limit)."""
    if server.status == "cloud_init":
        if server.deadline_at is not None:
            return server.deadline_at
        return server.status_changed_at + timedelta(seconds=settings.boot_timeout_seconds)
    limit = settings.phase_limit(server.status)
    if limit is None:
        return None
    return server.status_changed_at + timedelta(seconds=limit)


def _orphan(
    vps: ProviderServer, row: DbServer | None, now: datetime, min_age: float
) -> Finding | None:
    sid = vps.server_id
    if sid is None:
        why = "labelled managed but has no server id label"
    elif row is None:
        why = f"server {sid} does not exist in the database"
    elif row.status == "deleted":
        why = f"server {sid} is deleted in the database"
    elif row.provider_id is not None and row.provider_id != vps.id:
        why = f"server {sid} records Hetzner server {row.provider_id}; this one is a duplicate"
    elif row.provider_id is None and row.status not in MAY_LACK_VPS:
        why = f"server {sid} is {row.status} and records no VPS"
    else:
        return None
    born = created_at(vps)
    age = (now - born).total_seconds() if born is not None else None
    if age is None:
        fix, why = Fix.NONE, f"{why}; creation time unknown, left alone"
    elif age < min_age:
        fix = Fix.NONE
        why = f"{why}; created {age / 60:.0f} min ago, younger than the safety age, left alone"
    else:
        fix, why = Fix.DELETE, f"{why}; created {age / 3600:.1f} h ago"
    return Finding(
        Kind.ORPHAN,
        f"Hetzner server {vps.id} ({vps.name}): {why}",
        fix,
        server_id=sid,
        provider_id=vps.id,
        status=row.status if row else None,
        name=vps.name,
    )


def _stale_builder(
    vps: ProviderServer, image_id: int, images: Mapping[int, ImageView], now: datetime
) -> Finding | None:
    why = builder_finding(images.get(image_id), vps.id, now)
    if why is None:
        return None
    return Finding(
        Kind.ORPHAN,
        f"Hetzner server {vps.id} ({vps.name}): a stale builder of image {image_id}: {why}",
        Fix.DELETE,
        provider_id=vps.id,
        name=vps.name,
    )


def _pool_vps(
    vps: ProviderServer, pool_id: int, pool: Mapping[int, PoolServerView]
) -> tuple[Finding | None, ProviderServer | None]:
    """A pool-labelled VPS: a finding if it should go; else, once claimed, the VPS as
    its Server's (labelled with the server id) for the usual checks."""
    row = pool.get(pool_id)
    why = pool_finding(row, vps.id)
    if why is not None:
        found = Finding(
            Kind.ORPHAN,
            f"Hetzner server {vps.id} ({vps.name}): a stale warm pool server {pool_id}: {why}",
            Fix.DELETE,
            provider_id=vps.id,
            name=vps.name,
        )
        return found, None
    if row is not None and row.server_id is not None:
        return None, replace(vps, labels={**vps.labels, LABEL_SERVER: str(row.server_id)})
    return None, None


def diff(
    provider_servers: Sequence[ProviderServer],
    db_servers: Sequence[DbServer],
    jobs: Mapping[int, Sequence[ActiveJob]],
    now: datetime,
    settings: Settings,
    *,
    images: Mapping[int, ImageView] | None = None,
    pool: Mapping[int, PoolServerView] | None = None,
) -> Report:
    """Compare Hetzner, the database and the job queues (pure).

    Args:
        provider_servers: the servers Hetzner lists with our managed and env labels.
        db_servers: every live server, and deleted ones some VPS claims by label.
            Read before `provider_servers`, so a server created in between
            shows up as a VPS whose row records none yet (not drift), never as lost.
        jobs: the live jobs per server id (queued, scheduled, rate-limited, started).
        now: the current time (naive UTC).
        settings: phase limits, boot timeout, orphan safety age.
        images: the image rows not deleted, by id (their builders' owners), read
            before `provider_servers` too.
        pool: the pool rows, by id: those not deleted, read before
            `provider_servers`, and any other a pool-labelled VPS names.
    """
    by_id = {row.id: row for row in db_servers}
    on_hetzner = {vps.id for vps in provider_servers}
    findings: list[Finding] = []
    for listed in sorted(provider_servers, key=lambda s: s.id):
        vps = listed
        image_id = image_of_builder(vps.labels)
        if image_id is not None and vps.server_id is None:
            found = _stale_builder(vps, image_id, images or {}, now)
            if found is not None:
                findings.append(found)
            continue
        pool_id = pool_row_of(vps.labels)
        if pool_id is not None and vps.server_id is None:
            found, claimed = _pool_vps(vps, pool_id, pool or {})
            if found is not None:
                findings.append(found)
            if claimed is None:
                continue
            vps = claimed  # judged as the VPS of the server that claimed it
        row = by_id.get(vps.server_id) if vps.server_id is not None else None
        found = _orphan(vps, row, now, settings.orphan_min_age_seconds)
        if found is not None:
            findings.append(found)
    for row in sorted(db_servers, key=lambda r: r.id):
        if (
            row.status in HOLDS_VPS
            and row.provider_id is not None
            and row.provider_id not in on_hetzner
        ):
            fix = Fix.FORGET if row.status == "failed" else Fix.MARK_FAILED
            findings.append(
                Finding(
                    Kind.LOST,
                    f"server {row.id} ({row.status}) records Hetzner server "
                    f"{row.provider_id}, which Hetzner does not have",
                    fix,
                    server_id=row.id,
                    provider_id=row.provider_id,
                    status=row.status,
                    name=row.name,
                )
            )
            continue
        ends = phase_deadline(row, settings) if row.status in PHASE_STEPS else None
        if ends is None or now < ends or has_job(row, jobs.get(row.id, ())):
            continue
        late = (now - ends).total_seconds()
        fix = Fix.FAIL if row.status == "cloud_init" else Fix.REQUEUE
        findings.append(
            Finding(
                Kind.STUCK,
                f"server {row.id} has been {row.status} since "
                f"{row.status_changed_at:%Y-%m-%d %H:%M:%S}, {late:.0f}s past its phase "
                "deadline, with no job queued or running",
                fix,
                server_id=row.id,
                provider_id=row.provider_id,
                status=row.status,
                name=row.name,
            )
        )
    return Report(now, tuple(findings), len(provider_servers), len(db_servers))
