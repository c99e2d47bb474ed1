"""Schema versions and migrations (playhouse.migrate), so a live database can be upgraded.

A fresh database is created from the current models and stamped with
`SCHEMA_VERSION`. An existing one is brought forward by running, in order,
the migrations above its version, each in its own transaction (PostgreSQL
and SQLite both have transactional DDL). Processes refuse to start against a
database whose version differs from this release's (`check`), telling the
operator to run `rachel-cloud db upgrade`.

Adding a migration: change the model, then append `Migration(N, "...", fn)`
where `fn(migrator, db)` performs the same change with playhouse.migrate
operations (`migrator.add_column(...)` etc.). A test checks that upgrading
from every earlier version yields the same schema as a fresh create.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

import peewee
from playhouse.migrate import PostgresqlMigrator, SchemaMigrator, SqliteMigrator

from core.errors import SchemaVersionError
from core.platform.clock import utcnow
from core.store.db import current
from core.store.models import (
    MODELS,
    Customer,
    FleetRelease,
    Image,
    PoolServer,
    Release,
    Rollout,
    RolloutTarget,
    SchemaVersion,
    Server,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Migration:
    """One step of the schema: version N's change from N-1."""

    version: int
    description: str
    apply: Callable[[SchemaMigrator, peewee.Database], None]


def _baseline(migrator: SchemaMigrator, db: peewee.Database) -> None:
    # Version 1 is the schema of the first release, created from the models.
    db.create_tables(MODELS)


def _rachel8_as_published(migrator: SchemaMigrator, db: peewee.Database) -> None:
    # What Rachel8 needs beyond a bot token and Claude credentials, and the
    # commit each server runs. Existing customers get no owner id: their secrets
    # cannot be injected again until a deploy gives one (core.cloud.rachel8).
    # The columns come from the models, so the migration and a fresh schema agree.
    from playhouse.migrate import migrate  # noqa: PLC0415 - only upgrades need it

    columns = (
        (Customer, "owner_telegram_user_id"),
        (Customer, "stt_provider"),
        (Customer, "stt_api_key"),
        (Server, "rachel8_commit"),
    )
    migrate(
        *(
            migrator.add_column(model._meta.table_name, name, model._meta.fields[name])
            for model, name in columns
        )
    )


def _drift(migrator: SchemaMigrator, db: peewee.Database) -> None:
    # The reconciler's current finding per server (issue 21: a lost VPS showed green).
    from playhouse.migrate import migrate  # noqa: PLC0415 - only upgrades need it

    fields = Server._meta.fields
    migrate(
        *(
            migrator.add_column(Server._meta.table_name, name, fields[name])
            for name in ("drift", "drift_reason")
        )
    )


#: The columns of migration 4 (fleet health), in the models' order.
HEALTH_COLUMNS = (
    "heartbeat_credential_hash",
    "health",
    "health_reason",
    "health_changed_at",
    "repair_window_started_at",
    "repair_restarts",
    "repair_rebooted_at",
    "breaker_until",
    "owner_notified_down_at",
)


def _fleet_health(migrator: SchemaMigrator, db: peewee.Database) -> None:
    # Health beside the provisioning status, the agent's credential, repairs (issue 22).
    from playhouse.migrate import migrate  # noqa: PLC0415 - only upgrades need it

    table = Server._meta.table_name
    fields = Server._meta.fields
    # add_column also makes `health`'s index (the field is indexed), as a fresh create does.
    migrate(*(migrator.add_column(table, name, fields[name]) for name in HEALTH_COLUMNS))


#: The columns of migration 5 on `server` (the update claim), and its tables.
CLAIM_COLUMNS = ("update_claim", "update_claimed_at")
RELEASE_TABLES = (Release, FleetRelease, Rollout, RolloutTarget)


def _releases(migrator: SchemaMigrator, db: peewee.Database) -> None:
    # Rachel8 releases across the fleet (issue 23): releases, the fleet's current
    # one, rollouts and their per-server targets, and the claim an update holds.
    # The fleet's current release is seeded on first use (core.domain.releases),
    # from RACHEL8_COMMIT, not here: a migration does not read settings.
    from playhouse.migrate import migrate  # noqa: PLC0415 - only upgrades need it

    fields = Server._meta.fields
    migrate(*(migrator.add_column(Server._meta.table_name, n, fields[n]) for n in CLAIM_COLUMNS))
    db.create_tables(RELEASE_TABLES)


def _images(migrator: SchemaMigrator, db: peewee.Database) -> None:
    # Snapshot images of installed releases (issue 24): new servers start from them.
    db.create_tables([Image])


def _pool(migrator: SchemaMigrator, db: peewee.Database) -> None:
    # The warm pool (issue 24): servers made ahead, claimed by deploys.
    db.create_tables([PoolServer])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "baseline: customers, subscriptions, servers, events, deliveries", _baseline),
    Migration(
        2,
        "Rachel8 as published: the owner's Telegram id, speech-to-text, the running commit",
        _rachel8_as_published,
    ),
    Migration(3, "the reconciler's current finding per server (drift)", _drift),
    Migration(4, "fleet health: health state, heartbeat credential, repairs", _fleet_health),
    Migration(5, "releases and rollouts, the update claim on servers", _releases),
    Migration(6, "snapshot images of installed Rachel8 releases", _images),
    Migration(7, "the warm pool: servers made ahead, claimed by deploys", _pool),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
_LOCK_ID = zlib.crc32(b"rachel-cloud schema migration")


def _migrator(db: peewee.Database) -> SchemaMigrator:
    if isinstance(db, peewee.PostgresqlDatabase):
        return PostgresqlMigrator(db)
    return SqliteMigrator(db)


def database_version(db: peewee.Database | None = None) -> int:
    """The version recorded in the database; 0 for an empty database."""
    db = db or current()
    if not db.table_exists(SchemaVersion._meta.table_name):
        return 0
    row = SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar()
    return int(row or 0)


def check(db: peewee.Database | None = None, expected: int = SCHEMA_VERSION) -> None:
    """Refuse to run against a database this release does not match.

    Raises:
        SchemaVersionError: the schema is missing, older or newer than `expected`.
    """
    found = database_version(db)
    if found == expected:
        return
    if found == 0:
        raise SchemaVersionError("the database has no schema yet: run `rachel-cloud db upgrade`")
    if found < expected:
        raise SchemaVersionError(
            f"the database schema is at version {found}, this release needs {expected}: "
            "run `rachel-cloud db upgrade`"
        )
    raise SchemaVersionError(
        f"the database schema is at version {found}, newer than this release's {expected}: "
        "upgrade rachel-cloud on this machine"
    )


def _lock(db: peewee.Database) -> None:
    # Two processes upgrading at once (a release step racing a second deploy)
    # must not both run a migration. PostgreSQL: a transaction-scoped advisory
    # lock. SQLite: the transaction was begun IMMEDIATE, which takes the write lock.
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))


def _atomic(db: peewee.Database) -> AbstractContextManager[Any]:
    if isinstance(db, peewee.SqliteDatabase):
        return cast(AbstractContextManager[Any], db.atomic("IMMEDIATE"))
    return cast(AbstractContextManager[Any], db.atomic())


def upgrade(
    db: peewee.Database | None = None,
    migrations: Sequence[Migration] = MIGRATIONS,
) -> list[int]:
    """Bring the database to the newest version; return the versions applied.

    Raises:
        SchemaVersionError: the database is newer than this release.
    """
    db = db or current()
    target = migrations[-1].version
    applied: list[int] = []
    with _atomic(db):
        _lock(db)
        found = database_version(db)
        if found > target:
            raise SchemaVersionError(
                f"the database schema is at version {found}, newer than this release's "
                f"{target}: upgrade rachel-cloud on this machine"
            )
        if found == 0:
            db.create_tables(MODELS)
            SchemaVersion.create(version=target, applied_at=utcnow())
            log.info("created a fresh schema at version %d", target)
            return [target]
    for migration in migrations:
        if migration.version <= found:
            continue
        with _atomic(db):
            _lock(db)
            # Re-read under the lock: another process may have applied it meanwhile.
            if database_version(db) >= migration.version:
                continue
            log.info("applying migration %d: %s", migration.version, migration.description)
            migration.apply(_migrator(db), db)
            SchemaVersion.create(version=migration.version, applied_at=utcnow())
            applied.append(migration.version)
    return applied
