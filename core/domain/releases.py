"""Rachel8 releases: the commits the fleet may run, and the fleet's current one.

An operator adds a release (a full commit id and notes) before rolling it out
(`core.domain.rollout_store`). The fleet's current release (`FleetRelease`, one
row) is what new servers are created with; a completed rollout makes its
release current. RACHEL8_COMMIT only seeds it: while no release is current,
`current` records the setting's commit as a release ("seeded from
RACHEL8_COMMIT") and makes it current, so a fresh installation behaves as it
did before releases existed.

Releases are changed by operators and rollouts, rarely: every change is a
fleet Event (no server) of kind `release`.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee

from core.domain.lifecycle import validate_actor
from core.errors import RachelError
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.platform.install_parsing import parse_commit
from core.store.db import connection, write_transaction
from core.store.models import Event, FleetRelease, Release, Server

log = logging.getLogger(__name__)

#: The Event kind of release changes (fleet Events, no server).
EVENT_KIND = "release"
SEED_NOTES = "seeded from RACHEL8_COMMIT"
#: The shortest commit prefix a release is found by.
MIN_PREFIX = 7
MAX_NOTES = 2000
_HEX = re.compile(r"[0-9a-f]+")


class ReleaseError(RachelError):
    """A release that cannot be added or found; the message says why."""

    code = "release_error"


@dataclass(frozen=True)
class ReleaseRow:
    """A release as operators see it."""

    id: int
    commit: str
    notes: str
    added_by: str
    added_at: datetime
    current: bool
    servers: int  # live servers whose row says they run it


def short(commit: str | None) -> str:
    """A commit as shown in messages: its first 12 digits."""
    return (commit or "-")[:12]


def record(message: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> None:
    """A fleet Event (no server) of kind `release`, in the caller's transaction if any."""
    Event.create(server=None, at=clock.now(), kind=EVENT_KIND, message=message, actor=actor)


def add_release(commit: str, notes: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> Release:
    """Record a release the fleet may run.

    Raises:
        ReleaseError: not a full commit id (`invalid_commit`), notes too long
            (`invalid_notes`), or already a release (`duplicate_release`).
    """
    validate_actor(actor)
    try:
        value = parse_commit(commit)
    except ValueError as exc:
        raise ReleaseError(str(exc), code="invalid_commit") from None
    notes = notes.strip()
    if len(notes) > MAX_NOTES:
        raise ReleaseError(f"notes: at most {MAX_NOTES} characters", code="invalid_notes")
    with connection() as db, write_transaction(db):
        existing = Release.get_or_none(Release.commit == value)
        if existing is None:
            try:
                with db.atomic():
                    release: Release = Release.create(
                        commit=value, notes=notes, added_by=actor, added_at=clock.now()
                    )
            except peewee.IntegrityError:
                existing = Release.get_or_none(Release.commit == value)
        if existing is not None:
            raise ReleaseError(
                f"release {short(value)} already exists (added by {existing.added_by} "
                f"at {existing.added_at:%Y-%m-%d %H:%M} UTC)",
                code="duplicate_release",
            )
        record(f"release {short(value)} added: {notes or '(no notes)'}", actor, clock)
    log.info("release %s added by %s", short(value), actor)
    return release


def resolve(ref: str) -> Release:
    """The release a REF names: its full commit, or a unique prefix of at least 7 hex digits.

    Raises:
        ReleaseError: `unknown_release` (with how to add it) or `ambiguous_release`.
    """
    text = ref.strip().lower()
    if len(text) < MIN_PREFIX or len(text) > 40 or not _HEX.fullmatch(text):
        raise ReleaseError(
            f"unknown release {ref!r}: give a commit id (at least {MIN_PREFIX} hex digits) "
            "of a release in `rachel-cloud release list`",
            code="unknown_release",
        )
    with connection():
        found = list(
            Release.select().where(Release.commit.startswith(text)).order_by(Release.id).limit(4)
        )
    if not found:
        raise ReleaseError(
            f"unknown release {ref!r}: add it first with `rachel-cloud release add COMMIT`",
            code="unknown_release",
        )
    if len(found) > 1:
        raise ReleaseError(
            f"release {ref!r} is ambiguous: it starts "
            + ", ".join(short(r.commit) for r in found[:3])
            + (" and more" if len(found) > 3 else "")
            + "; give more digits",
            code="ambiguous_release",
        )
    return found[0]


def _current_row() -> Release | None:
    row = (
        Release.select()
        .join(FleetRelease, on=(FleetRelease.release == Release.id))
        .where(FleetRelease.id == 1)
        .first()
    )
    return row if isinstance(row, Release) else None


def current(seed_commit: str, clock: Clock = SYSTEM_CLOCK) -> Release:
    """The fleet's current release; seeded from `seed_commit` (RACHEL8_COMMIT) while none is.

    Safe when many processes seed at once: each insert yields to the one that won.
    """
    with connection() as db:
        found = _current_row()
        if found is not None:
            return found
        with write_transaction(db):
            now = clock.now()
            Release.insert(
                commit=seed_commit, notes=SEED_NOTES, added_by="system", added_at=now
            ).on_conflict_ignore().execute()
            release = Release.get(Release.commit == seed_commit)
            seeded = (
                FleetRelease.insert(id=1, release=release.id, changed_at=now, changed_by="system")
                .on_conflict_ignore()
                .execute()
            )
            if seeded:
                record(
                    f"the fleet's current release is {short(seed_commit)} ({SEED_NOTES})",
                    "system",
                    clock,
                )
                log.info("fleet release seeded: %s (RACHEL8_COMMIT)", short(seed_commit))
        found = _current_row()
    assert found is not None  # the row exists now, ours or the winner's
    return found


def current_commit(seed_commit: str, clock: Clock = SYSTEM_CLOCK) -> str:
    """The commit new servers are created with (see `current`)."""
    return str(current(seed_commit, clock).commit)


def set_current(release: Release, actor: str, why: str, clock: Clock = SYSTEM_CLOCK) -> None:
    """Make `release` the fleet's current one, in the caller's transaction (recorded).

    The row exists: callers have read `current` first (a rollout did, when it started).
    """
    validate_actor(actor)
    now = clock.now()
    changed = (
        FleetRelease.update(release=release.id, changed_at=now, changed_by=actor)
        .where(FleetRelease.id == 1)
        .execute()
    )
    if not changed:
        FleetRelease.create(id=1, release=release.id, changed_at=now, changed_by=actor)
    record(f"the fleet's current release is {short(release.commit)}: {why}", actor, clock)


def list_releases(seed_commit: str) -> list[ReleaseRow]:
    """Every release, newest first, with the current one marked and its live servers counted."""
    fleet = current(seed_commit)
    with connection():
        query: Any = (
            Server.select(Server.rachel8_commit, peewee.fn.COUNT(Server.id))
            .where((Server.status != "deleted") & Server.rachel8_commit.is_null(False))
            .group_by(Server.rachel8_commit)
            .tuples()
        )
        running: dict[str, int] = dict(query)
        releases = list(Release.select().order_by(Release.id.desc()))
    return [
        ReleaseRow(
            id=r.id,
            commit=r.commit,
            notes=r.notes,
            added_by=r.added_by,
            added_at=r.added_at,
            current=r.id == fleet.id,
            servers=int(running.get(r.commit, 0)),
        )
        for r in releases
    ]
