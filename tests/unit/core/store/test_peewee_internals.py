"""peewee's internals that core.store relies on are still there and still honoured."""

from __future__ import annotations

import os
from pathlib import Path

import peewee
import pytest
from playhouse.pool import PooledSqliteDatabase

from core.store.peewee_internals import (
    PeeweeInternalsChanged,
    PingedPostgresPool,
    check,
    forget_connections,
)


def test_check_accepts_the_databases_we_open(tmp_path: Path) -> None:
    check(peewee.SqliteDatabase(str(tmp_path / "a.db")))
    check(PooledSqliteDatabase(str(tmp_path / "b.db")))
    check(PingedPostgresPool("nowhere", host="127.0.0.1"))  # constructing does not connect


def test_check_refuses_a_pool_without_its_internals(tmp_path: Path) -> None:
    pool = PooledSqliteDatabase(str(tmp_path / "a.db"))
    del pool._in_use
    with pytest.raises(PeeweeInternalsChanged, match="_in_use"):
        check(pool)


def test_the_pool_calls_the_hooks_the_pinged_pool_overrides(tmp_path: Path) -> None:
    calls: list[str] = []

    class Counting(PooledSqliteDatabase):  # type: ignore[misc]
        def _is_closed(self, conn: object) -> bool:
            calls.append("is_closed")
            result: bool = super()._is_closed(conn)
            return result

        def _close(self, conn: object, close_conn: bool = False) -> None:
            calls.append("close")
            super()._close(conn, close_conn)

    db = Counting(str(tmp_path / "a.db"))
    db.connect()
    db.close()  # check-in: _close
    db.connect()  # check-out of the idle connection: _is_closed
    db.close()
    assert calls.count("close") == 2
    assert "is_closed" in calls
    db.close_all()


def test_a_forked_child_forgets_the_parents_pool(tmp_path: Path) -> None:
    db = PooledSqliteDatabase(str(tmp_path / "a.db"))
    db.connect()
    db.execute_sql("CREATE TABLE t (x INTEGER)")
    parent_conn = db.connection()
    pid = os.fork()
    if pid == 0:  # the child: exit code says what it saw
        try:
            forget_connections(db)
            ok = db.is_closed() and not db._in_use and not db._connections
            db.connect()
            ok = ok and db.connection() is not parent_conn
            db.execute_sql("INSERT INTO t VALUES (1)")
            db.close_all()
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert db.connection() is parent_conn  # the parent's own connection is untouched
    assert db.execute_sql("SELECT count(*) FROM t").fetchone() == (1,)
    db.close_all()
