"""PostgreSQL connections are pooled; a connection the server dropped is replaced, not lent."""

from __future__ import annotations

import os

import peewee
import psycopg2
import pytest

from core.store.db import connection, init_database
from core.store.peewee_internals import PingedPostgresPool

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(postgres_url: str | None) -> str:
    if postgres_url is None:
        pytest.skip("needs TEST_DATABASE_URL")
    return postgres_url


def _backend_pid() -> int:
    with connection() as db:
        (pid,) = db.execute_sql("SELECT pg_backend_pid()").fetchone()
    return int(pid)


def test_connections_are_reused(pg_url: str) -> None:
    db = init_database(pg_url)
    assert isinstance(db, PingedPostgresPool)
    assert _backend_pid() == _backend_pid()  # the same session, returned and lent again
    db.close_all()


def test_a_connection_the_server_dropped_is_replaced(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = init_database(pg_url)
    monkeypatch.setattr(PingedPostgresPool, "PING_AFTER", 0.0)  # always check before lending
    first = _backend_pid()
    admin = psycopg2.connect(os.environ["TEST_DATABASE_URL"])
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", (first,))
    admin.close()
    second = _backend_pid()  # no error: the dead one was discarded
    assert second != first
    db.close_all()


def test_the_pool_is_closed_when_the_database_changes(pg_url: str, tmp_path: object) -> None:
    db = init_database(pg_url)
    _backend_pid()
    assert db._connections  # one idle connection in the pool
    init_database(f"sqlite:///{tmp_path}/other.db")
    assert not db._connections and not db._in_use
    assert isinstance(init_database(pg_url), peewee.PostgresqlDatabase)
