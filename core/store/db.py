"""Database connection: SQLite (WAL, busy timeout) by default, PostgreSQL by URL.

Models bind to `database`, a peewee `DatabaseProxy`, and `init_database`
points it at the configured database. peewee keeps one connection per thread,
so threads are safe; a forked RQ work horse must not reuse its parent's
connection (the two processes would interleave on one socket or SQLite
handle), so after a fork the child forgets the inherited connection and
opens its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse, urlsplit

import peewee
from playhouse.db_url import connect as connect_url
from playhouse.db_url import parseresult_to_dict
from playhouse.pool import PooledDatabase

from core.errors import DatabaseError
from core.store import peewee_internals
from core.store.peewee_internals import PingedPostgresPool

log = logging.getLogger(__name__)

database = peewee.DatabaseProxy()

#: Writers wait this long for SQLite's lock instead of failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 15_000
SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "normal",  # WAL + normal: durable across process crashes, fast
    "foreign_keys": 1,
    "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
}

#: PostgreSQL pool: idle connections are recycled after `stale_timeout` seconds;
#: a thread that finds `max_connections` in use waits up to `timeout` seconds.
POOL_OPTIONS: dict[str, Any] = {"max_connections": 64, "stale_timeout": 300, "timeout": 30}

_fork_hook_installed = False


def _forget_connection_after_fork() -> None:
    if database.obj is not None:
        peewee_internals.forget_connections(database.obj)


def open_database(url: str) -> peewee.Database:
    """Create (not connect) a peewee database for `url`.

    Raises:
        DatabaseError: the URL's scheme is not supported or its directory cannot be made.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # SQLAlchemy's convention: sqlite:///relative.db, sqlite:////absolute.db
        rest = unquote(url.split("://", 1)[1])
        path = rest[1:] if rest.startswith("/") else rest
        if path in ("", ":memory:"):
            path = ":memory:"
        else:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatabaseError(
                    f"cannot create the directory for SQLite at {path}: {exc}"
                ) from exc
        return peewee.SqliteDatabase(
            path, pragmas=SQLITE_PRAGMAS, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000
        )
    if scheme in ("postgres", "postgresql"):
        # A pool: a PostgreSQL connection costs the server a backend process and
        # the client a handshake, milliseconds that every request and job paid.
        params = parseresult_to_dict(urlparse(url))
        if not params.get("database"):
            connect_url(url.replace("postgres://", "postgresql://", 1))  # its error message
        db: peewee.Database = PingedPostgresPool(**params, **POOL_OPTIONS)
        return db
    raise DatabaseError(f"unsupported database URL scheme {scheme!r} (use sqlite or postgresql)")


def init_database(url: str) -> peewee.Database:
    """Point the models at the database at `url` and return it.

    Safe to call again (tests switch databases); the previous one is closed.
    """
    global _fork_hook_installed  # noqa: PLW0603 - one process-wide hook
    previous = database.obj
    if previous is not None and not previous.is_closed():
        previous.close()
    if isinstance(previous, PooledDatabase):
        previous.close_all()
    db = open_database(url)
    try:
        peewee_internals.check(db)
    except peewee_internals.PeeweeInternalsChanged as exc:
        raise DatabaseError(f"this peewee release is not supported: {exc}") from exc
    database.initialize(db)
    if not _fork_hook_installed and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_forget_connection_after_fork)
        _fork_hook_installed = True
    return db


def current() -> peewee.Database:
    """The initialised database.

    Raises:
        DatabaseError: `init_database` was not called in this process.
    """
    if database.obj is None:
        raise DatabaseError("the database is not initialised (call init_database first)")
    db: peewee.Database = database.obj
    return db


def describe_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


@contextmanager
def connection() -> Iterator[peewee.Database]:
    """Use the database within a block, translating connection failures.

    Reuses the thread's open connection; opens (and then closes) one otherwise.

    Raises:
        DatabaseError: the database cannot be reached.
    """
    db = current()
    opened = False
    try:
        if db.is_closed():
            db.connect()
            opened = True
    except peewee.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {exc}") from exc
    try:
        yield db
    finally:
        if opened and not db.in_transaction():
            db.close()


def write_transaction(db: peewee.Database) -> Any:
    """A transaction that writes: on SQLite it takes the write lock up front.

    Two SQLite writers then queue on the busy timeout, instead of one failing
    when it upgrades its read snapshot to a write.
    """
    if isinstance(db, peewee.SqliteDatabase):
        return db.atomic("IMMEDIATE")
    return db.atomic()


def ping() -> None:
    """Run a trivial query (readiness checks).

    Raises:
        DatabaseError: the database cannot be reached.
    """
    try:
        with connection() as db:
            db.execute_sql("SELECT 1")
    except peewee.PeeweeException as exc:
        raise DatabaseError(f"database unreachable: {exc}") from exc


def sqlite_path(db: Any) -> str | None:
    """The file of a SQLite database, None for other databases."""
    if isinstance(db, peewee.SqliteDatabase):
        return str(db.database)
    return None
