"""Schema versions and upgrades of a live database."""

from pathlib import Path
from typing import Any

import peewee
import pytest
from playhouse.migrate import SchemaMigrator

from core.errors import SchemaVersionError
from core.store import migrations
from core.store.db import init_database
from core.store.migrations import MIGRATIONS, SCHEMA_VERSION, Migration
from core.store.models import Customer, Image, PoolServer, SchemaVersion, Server
from tests import factories


def test_fresh_upgrade_creates_and_stamps(tmp_path: Path) -> None:
    db = init_database(f"sqlite:///{tmp_path / 'fresh.db'}")
    with pytest.raises(SchemaVersionError, match="db upgrade"):
        migrations.check(db)
    assert migrations.upgrade(db) == [SCHEMA_VERSION]
    migrations.check(db)
    assert migrations.upgrade(db) == []  # idempotent


def test_newer_database_is_refused(db: peewee.Database) -> None:
    SchemaVersion.create(version=SCHEMA_VERSION + 1)
    with pytest.raises(SchemaVersionError, match="newer than this release"):
        migrations.check(db)
    with pytest.raises(SchemaVersionError, match="newer than this release"):
        migrations.upgrade(db)


def test_older_database_is_upgraded_in_place_keeping_its_data(db: peewee.Database) -> None:
    """A live database at the current version gains a column through a new migration."""
    owner = factories.customer(email="keep@example.com")

    def add_locale(migrator: SchemaMigrator, database: peewee.Database) -> None:
        from playhouse.migrate import migrate

        migrate(
            migrator.add_column("customer", "locale", peewee.CharField(max_length=8, default="en"))
        )

    newer = (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "customer locale", add_locale))
    with pytest.raises(SchemaVersionError, match="needs"):
        migrations.check(db, expected=SCHEMA_VERSION + 1)
    assert migrations.upgrade(db, newer) == [SCHEMA_VERSION + 1]
    migrations.check(db, expected=SCHEMA_VERSION + 1)
    assert migrations.upgrade(db, newer) == []
    columns = {c.name for c in db.get_columns("customer")}
    assert "locale" in columns
    assert Customer.get_by_id(owner.id).email == "keep@example.com"
    cursor = db.execute_sql("SELECT locale FROM customer")
    assert cursor.fetchone()[0] == "en"


def test_a_failing_migration_rolls_back(db: peewee.Database) -> None:
    def broken(migrator: SchemaMigrator, database: peewee.Database) -> None:
        database.execute_sql("CREATE TABLE half_done (id INTEGER)")
        raise RuntimeError("migration bug")

    newer = (*MIGRATIONS, Migration(SCHEMA_VERSION + 1, "broken", broken))
    with pytest.raises(RuntimeError):
        migrations.upgrade(db, newer)
    assert migrations.database_version(db) == SCHEMA_VERSION
    assert not db.table_exists("half_done")


def test_version_1_gains_what_rachel8_needs_keeping_its_customers(db: peewee.Database) -> None:
    """A database of the release before Rachel8 ran as published upgrades in place."""
    from playhouse.migrate import migrate

    owner = factories.customer(email="before@example.com")
    migrator = migrations._migrator(db)
    migrate(
        migrator.drop_column("customer", "owner_telegram_user_id"),
        migrator.drop_column("customer", "stt_provider"),
        migrator.drop_column("customer", "stt_api_key"),
        migrator.drop_column("server", "rachel8_commit"),
        # Later versions' columns too: this is a version 1 database.
        migrator.drop_column("server", "drift"),
        migrator.drop_column("server", "drift_reason"),
        *_drop_health(migrator),
        *_drop_releases(db, migrator),
    )
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=1)
    with pytest.raises(SchemaVersionError, match=f"needs {SCHEMA_VERSION}"):
        migrations.check(db)
    assert migrations.upgrade(db) == [2, 3, 4, 5, 6, 7]
    migrations.check(db)
    assert {"owner_telegram_user_id", "stt_provider", "stt_api_key"} <= {
        c.name for c in db.get_columns("customer")
    }
    assert "rachel8_commit" in {c.name for c in db.get_columns("server")}
    kept = Customer.get_by_id(owner.id)
    assert kept.email == "before@example.com"
    assert kept.owner_telegram_user_id is None  # never given: injection refuses until it is


def test_version_2_gains_the_reconcilers_drift_columns(db: peewee.Database) -> None:
    """Issue 21: the current reconciler finding per server needs two columns."""
    from playhouse.migrate import migrate

    server = factories.server(status="ready")
    migrator = migrations._migrator(db)
    migrate(
        migrator.drop_column("server", "drift"),
        migrator.drop_column("server", "drift_reason"),
        *_drop_health(migrator),
        *_drop_releases(db, migrator),
    )
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=2)
    assert migrations.upgrade(db) == [3, 4, 5, 6, 7]
    migrations.check(db)
    assert {"drift", "drift_reason"} <= {c.name for c in db.get_columns("server")}
    assert Server.get_by_id(server.id).drift is None


def _drop_health(migrator: Any) -> list[Any]:
    """Migration 4's columns and index, as a database from before it lacks them."""
    return [
        migrator.drop_index("server", "server_health"),
        *(migrator.drop_column("server", name) for name in migrations.HEALTH_COLUMNS),
    ]


def _drop_releases(db: peewee.Database, migrator: Any) -> list[Any]:
    """Migration 5's tables (dropped at once) and columns, as a database from before it
    lacks; and migrations 6's and 7's tables (later ones are missing too)."""
    db.drop_tables([PoolServer, Image])
    db.drop_tables(migrations.RELEASE_TABLES)
    return [migrator.drop_column("server", name) for name in migrations.CLAIM_COLUMNS]


def _schema(db: peewee.Database) -> dict[str, tuple[list[tuple[str, str, bool]], list[str]]]:
    """Every table's columns (name, type, nullable) and index names."""
    return {
        table: (
            sorted((c.name, c.data_type.lower(), c.null) for c in db.get_columns(table)),
            sorted(i.name for i in db.get_indexes(table)),
        )
        for table in db.get_tables()
    }


def test_version_4_gains_releases_and_the_update_claim_as_a_fresh_schema_has_them(
    db: peewee.Database,
) -> None:
    """Issue 23: a version 4 database upgrades to what a fresh create makes, keeping its rows."""
    from playhouse.migrate import migrate

    fresh = _schema(db)
    server = factories.server(status="ready", rachel8_commit="a" * 40)
    migrate(*_drop_releases(db, migrations._migrator(db)))
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=4)
    assert not db.table_exists("rollout")
    assert migrations.upgrade(db) == [5, 6, 7]
    migrations.check(db)
    assert _schema(db) == fresh
    kept = Server.get_by_id(server.id)
    assert (kept.rachel8_commit, kept.update_claim, kept.update_claimed_at) == (
        "a" * 40,
        None,
        None,
    )


def test_version_3_gains_fleet_health(db: peewee.Database) -> None:
    """Issue 22: health beside the status; every ready server starts unknown."""
    from playhouse.migrate import migrate

    server = factories.server(status="ready")
    migrator = migrations._migrator(db)
    migrate(*_drop_health(migrator), *_drop_releases(db, migrator))
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=3)
    assert migrations.upgrade(db) == [4, 5, 6, 7]
    migrations.check(db)
    kept = Server.get_by_id(server.id)
    assert (kept.health, kept.repair_restarts) == ("unknown", 0)
    assert kept.heartbeat_credential_hash is None
    assert "server_health" in {i.name for i in db.get_indexes("server")}


def test_version_5_gains_images_as_a_fresh_schema_has_them(db: peewee.Database) -> None:
    """Issue 24: a version 5 database gains the image table, keeping its rows."""
    fresh = _schema(db)
    server = factories.server(status="ready", rachel8_commit="b" * 40)
    db.drop_tables([PoolServer, Image])
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=5)
    assert migrations.upgrade(db) == [6, 7]
    migrations.check(db)
    assert _schema(db) == fresh
    assert Server.get_by_id(server.id).rachel8_commit == "b" * 40
    assert Image.select().count() == 0


def test_version_6_gains_the_warm_pool_as_a_fresh_schema_has_it(db: peewee.Database) -> None:
    """Issue 24: a version 6 database gains the pool's table, keeping its rows."""
    fresh = _schema(db)
    server = factories.server(status="ready")
    db.drop_tables([PoolServer])
    SchemaVersion.delete().execute()
    SchemaVersion.create(version=6)
    assert migrations.upgrade(db) == [7]
    migrations.check(db)
    assert _schema(db) == fresh
    assert Server.get_by_id(server.id).status == "ready"
    assert PoolServer.select().count() == 0
