"""The private parts of peewee (4.x) and its connection pool that the database module relies on.

`core.store.db` needs two things peewee's public API does not offer:

- A pool that checks an idle connection before lending it. `PooledDatabase`
  calls `_is_closed(conn)` on check-out and `_close(conn, close_conn)` on
  check-in; those two hooks are how its own MySQL, PostgreSQL and SQLite
  pools specialise it, and the only place a liveness check can go.
- Forgetting a connection after `fork()`. A forked RQ work horse inherits its
  parent's connection; closing it would send PostgreSQL a terminate message
  on the parent's socket (or finalise the parent's SQLite handle), so the
  child must drop it without closing: `Database._state.reset()`, and for a
  pool a fresh `_connections` heap, `_in_use` map and `_pool_lock` /
  `_pool_available` pair (another thread of the parent may have held the
  lock at the fork). peewee has no public "forget" call.

`check(db)` runs when a database is opened, so a peewee release that renames
any of these fails at start instead of corrupting a connection after a fork;
tests/unit/core/store/test_peewee_internals.py checks that peewee still calls
the hooks and that a forgotten pool works.
"""

from __future__ import annotations

import threading
import time
from typing import Any, cast

import peewee
from playhouse.pool import PooledDatabase, PooledPostgresqlDatabase

_POOL_ATTRIBUTES = ("_connections", "_in_use", "_pool_lock", "_pool_available")
_POOL_HOOKS = ("_is_closed", "_close")


class PeeweeInternalsChanged(RuntimeError):
    """The installed peewee no longer has an internal this module relies on."""


def check(db: peewee.Database) -> None:
    """Raise unless `db` has every internal this module touches.

    Raises:
        PeeweeInternalsChanged: peewee moved or renamed one of them.
    """
    state = getattr(db, "_state", None)
    if not callable(getattr(state, "reset", None)):
        raise PeeweeInternalsChanged("peewee.Database has no `_state.reset()`")
    if isinstance(db, PooledDatabase):
        for name in _POOL_ATTRIBUTES:
            if not hasattr(db, name):
                raise PeeweeInternalsChanged(f"playhouse.pool.PooledDatabase has no `{name}`")
        for name in _POOL_HOOKS:
            if not callable(getattr(PooledDatabase, name, None)):
                raise PeeweeInternalsChanged(f"PooledDatabase has no `{name}` hook")


def forget_connections(db: peewee.Database) -> None:
    """Drop (without closing) every connection `db` holds: they belong to another process."""
    # peewee's annotations leave `_state` out; it is checked by `check` at open.
    cast(Any, db)._state.reset()
    if isinstance(db, PooledDatabase):
        db._connections = []
        db._in_use = {}
        db._pool_lock = threading.RLock()
        db._pool_available = threading.Condition(db._pool_lock)


class PingedPostgresPool(PooledPostgresqlDatabase):  # type: ignore[misc]
    """A PostgreSQL connection pool that checks an idle connection before lending it.

    A connection the server dropped (a restart, an idle timeout) is discarded
    and replaced, as a fresh connection per use would have been. Connections
    returned less than `PING_AFTER` seconds ago are lent without the round trip.
    """

    PING_AFTER = 1.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._returned: dict[int, float] = {}

    def _close(self, conn: Any, close_conn: bool = False) -> None:
        if close_conn:
            self._returned.pop(id(conn), None)
        else:
            self._returned[id(conn)] = time.monotonic()
        super()._close(conn, close_conn)

    def _is_closed(self, conn: Any) -> bool:
        if super()._is_closed(conn):
            self._returned.pop(id(conn), None)
            return True
        if time.monotonic() - self._returned.get(id(conn), 0.0) < self.PING_AFTER:
            return False
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1")
        except Exception:
            return True
        return False
