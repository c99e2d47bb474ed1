"""Shared fixtures: a real database (SQLite, and PostgreSQL when TEST_DATABASE_URL
is set) and a real Redis server (TEST_REDIS_URL, else embedded)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import peewee
import pytest
import redis

from cli.embedded_redis import EmbeddedRedis
from core.platform.settings import Settings
from core.store import migrations
from core.store.db import init_database

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = REPO_ROOT.parent / "shared"


def make_settings(tmp_path: Path, **env: str) -> Settings:
    """Settings isolated from the developer's environment and `.env`."""
    base = {"RACHEL_DATA_DIR": str(tmp_path / "data")}
    base.update(env)
    return Settings.load(environ=base, env_file=None)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


# --- databases -----------------------------------------------------------------


def _postgres_admin_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    """A throwaway PostgreSQL database for this test session, dropped at the end."""
    admin = _postgres_admin_url()
    if admin is None:
        yield None
        return
    name = f"rc_test_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(admin)
    admin_db = peewee.PostgresqlDatabase(
        parts.path.lstrip("/") or "postgres",
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username,
        password=parts.password,
    )
    admin_db.connect()
    admin_db.execute_sql(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        from core.store.db import database

        if database.obj is not None and not database.obj.is_closed():
            database.obj.close()
        admin_db.execute_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin_db.close()


def _backends() -> list[object]:
    params: list[object] = ["sqlite"]
    params.append(pytest.param("postgres", marks=pytest.mark.postgres))
    return params


@pytest.fixture(params=_backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str | None) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    if postgres_url is None:
        pytest.skip(
            "PostgreSQL tests need TEST_DATABASE_URL (.ci/run sets it when a local "
            "PostgreSQL answers)"
        )
    return postgres_url


@pytest.fixture
def db(database_url: str) -> Iterator[peewee.Database]:
    """A fresh, migrated database (SQLite file, or the session's PostgreSQL database)."""
    database = init_database(database_url)
    database.connect(reuse_if_open=True)
    if isinstance(database, peewee.PostgresqlDatabase):
        database.execute_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    migrations.upgrade(database)
    try:
        yield database
    finally:
        if not database.is_closed():
            database.close()


# --- redis ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server: TEST_REDIS_URL, else an embedded one."""
    # Only TEST_REDIS_URL: tests flush their database, so never a REDIS_URL meant for real use.
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield _own_database(url)
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    yield server.ensure_running()
    server.stop()


def _own_database(url: str) -> str:
    """`url` for this test process: under pytest-xdist, each worker a database of its own
    (the one given, then the ones below it), since tests flush theirs."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    own = (base - int(worker[2:])) % 16
    return urlunsplit(parts._replace(path=f"/{own}"))


@pytest.fixture
def redis_client(redis_server_url: str) -> Iterator[redis.Redis]:
    """A client on a clean database of the test Redis server."""
    client = redis.Redis.from_url(redis_server_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()
