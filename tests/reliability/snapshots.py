"""Before/after snapshots of everything the control plane can change: the whole
database (every table, every column, encrypted ones included) and the whole of
Redis (every key and its content). Request counters (`rachel-cloud:metrics:*`,
what /metrics reports) are left out: counting a refused request is not a change
of state."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from core.store.models import MODELS
from tests.leaks import _redis_values


@dataclass(frozen=True)
class State:
    """A comparable snapshot; `==` means nothing changed."""

    database: tuple[tuple[str, tuple[object, ...]], ...]
    redis: tuple[tuple[bytes, tuple[bytes, ...]], ...]


def database_rows() -> tuple[tuple[str, tuple[object, ...]], ...]:
    """Every row of every table, all columns, in primary-key order."""
    rows: list[tuple[str, tuple[object, ...]]] = []
    for model in MODELS:
        pk = model._meta.primary_key
        for values in model.select().order_by(pk).tuples():
            rows.append((model.__name__, tuple(repr(v) for v in values)))
    return tuple(rows)


#: Keys that count requests, not state.
COUNTERS = b"rachel-cloud:metrics:"


def redis_items(client: redis.Redis) -> tuple[tuple[bytes, tuple[bytes, ...]], ...]:
    """Every key but the request counters, with its (sorted) values."""
    return tuple(
        (key, tuple(sorted(_redis_values(client, key))))
        for key in sorted(client.scan_iter(count=1000))
        if not key.startswith(COUNTERS)
    )


def state(client: redis.Redis) -> State:
    """The database and Redis as they are now."""
    return State(database_rows(), redis_items(client))
