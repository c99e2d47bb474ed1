"""Reading one row by its primary key, with the SQL built once per model.

Every job starts by reading its server (and the injection its customer) with
every column. peewee builds that SELECT anew on each call, walking some forty
column nodes: 0.6 ms where running it takes 0.1, and peewee's SQL generation
was the largest single item of a worker's CPU (bench/provision.py, py-spy).
The SQL text depends only on the model and the database's class (quoting and
parameter style), so it is built once per pair and the row is read with
`Model.raw`, which converts the columns exactly as a normal select does.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

import peewee

from core.store.db import current

M = TypeVar("M", bound=peewee.Model)

_sql: dict[tuple[type[peewee.Model], type[peewee.Database]], str] = {}
_lock = threading.Lock()


def _select_sql(model: type[peewee.Model], db: peewee.Database) -> str:
    key = (model, type(db))
    sql = _sql.get(key)
    if sql is None:
        # A placeholder value: only the SQL text is kept, the parameter is bound per call.
        query = model.select().where(model._meta.primary_key == 0)
        sql, _ = db.get_sql_context().sql(query).query()
        with _lock:
            _sql[key] = sql
    return sql


def prepare(*models: type[peewee.Model]) -> None:
    """Build the SQL of these models' reads now (a worker does, before forking horses)."""
    db = current()
    for model in models:
        _select_sql(model, db)


def get(model: type[M], pk: Any) -> M | None:
    """The row of `model` whose primary key is `pk`, or None (like `get_or_none`)."""
    sql = _select_sql(model, current())
    row: M | None = next(iter(model.raw(sql, pk)), None)
    return row


def get_by_id(model: type[M], pk: Any) -> M:
    """Like `get`, but a missing row raises `model.DoesNotExist` (like `get_by_id`)."""
    row = get(model, pk)
    if row is None:
        missing: type[Exception] = model.DoesNotExist  # type: ignore[attr-defined]
        raise missing(f"{model.__name__} {pk} does not exist")
    return row
