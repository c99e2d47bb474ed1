"""The server lifecycle: the one module that owns status transitions.

```
pending -> creating -> cloud_init -> injecting_secrets -> ready
   any in-flight state -> failed          (cleanup runs, retry allowed)
   ready | failed -> deprovisioning -> deleted
```

The state machine is pure data and functions (`allowed`, `check`). `transition`
applies one as a compare-and-set (`UPDATE ... WHERE id=? AND status=?`) and
writes its Event in the same transaction, so a job that runs twice (RQ is
at-least-once) cannot advance a server twice, and the timeline never misses
a step. After commit, a small message is handed to the injected publisher
(Redis pub/sub in production) for live views.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import peewee

from core.errors import InvalidTransition
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.store.db import current
from core.store.models import Event, Server

log = logging.getLogger(__name__)


class Status(StrEnum):
    """Where a server is in its life."""

    PENDING = "pending"
    CREATING = "creating"
    CLOUD_INIT = "cloud_init"
    INJECTING_SECRETS = "injecting_secrets"
    READY = "ready"
    FAILED = "failed"
    DEPROVISIONING = "deprovisioning"
    DELETED = "deleted"


#: Provisioning phases, in order (a server in one of these has work in flight).
IN_FLIGHT: tuple[Status, ...] = (
    Status.PENDING,
    Status.CREATING,
    Status.CLOUD_INIT,
    Status.INJECTING_SECRETS,
)
#: The statuses that count as "the customer's live server".
LIVE: frozenset[Status] = frozenset(Status) - {Status.DELETED}
TERMINAL: frozenset[Status] = frozenset({Status.DELETED})

TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.PENDING: frozenset({Status.CREATING, Status.FAILED}),
    Status.CREATING: frozenset({Status.CLOUD_INIT, Status.FAILED}),
    Status.CLOUD_INIT: frozenset({Status.INJECTING_SECRETS, Status.FAILED}),
    Status.INJECTING_SECRETS: frozenset({Status.READY, Status.FAILED}),
    # Re-injecting secrets into a ready server passes through injecting_secrets again.
    # ready -> failed: the reconciler found its VPS gone from Hetzner (lost).
    Status.READY: frozenset({Status.DEPROVISIONING, Status.INJECTING_SECRETS, Status.FAILED}),
    # Retry restarts the phase that failed; see `retry_target`.
    Status.FAILED: frozenset(
        {Status.DEPROVISIONING, Status.PENDING, Status.CREATING, Status.INJECTING_SECRETS}
    ),
    Status.DEPROVISIONING: frozenset({Status.DELETED}),
    Status.DELETED: frozenset(),
}

#: The timestamp column each status stamps when entered.
STAMP_COLUMN: Mapping[Status, str] = {
    Status.CREATING: "creating_at",
    Status.CLOUD_INIT: "cloud_init_at",
    Status.INJECTING_SECRETS: "injecting_secrets_at",
    Status.READY: "ready_at",
    Status.FAILED: "failed_at",
    Status.DEPROVISIONING: "deprovisioning_at",
    Status.DELETED: "deleted_at",
}

_ACTOR = re.compile(r"^(system|webhook|cron|customer|operator:[A-Za-z0-9._@-]{1,64})$")


def allowed(source: Status | str, target: Status | str) -> bool:
    """Whether the state machine permits `source -> target`."""
    try:
        return Status(target) in TRANSITIONS[Status(source)]
    except ValueError:
        return False


def check(source: Status | str, target: Status | str) -> None:
    """Like `allowed`, but raises.

    Raises:
        InvalidTransition: the transition is not permitted (or a status is unknown).
    """
    if not allowed(source, target):
        raise InvalidTransition(f"a server cannot go from {source} to {target}")


def retry_target(failed_phase: str | None) -> Status:
    """Where a failed server restarts: the phase that failed, else from the beginning.

    A failure in cloud_init restarts creating, because the VPS that never
    called back has been cleaned up and a fresh one is needed.
    """
    if failed_phase in (Status.INJECTING_SECRETS,):
        return Status.INJECTING_SECRETS
    if failed_phase in (Status.CREATING, Status.CLOUD_INIT):
        return Status.CREATING
    return Status.PENDING


def validate_actor(actor: str) -> str:
    """Check an Event actor: system, webhook, cron, customer (the API) or operator:NAME.

    Raises:
        ValueError: the actor is not one of those forms.
    """
    if not _ACTOR.match(actor):
        raise ValueError(
            f"invalid actor {actor!r}: use system, webhook, cron, customer or operator:NAME"
        )
    return actor


@dataclass(frozen=True)
class TransitionMessage:
    """What is published after a transition (no secrets, ever)."""

    server_id: int
    from_status: str
    to_status: str
    at: datetime
    actor: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "type": "transition",
            "server_id": self.server_id,
            "from": self.from_status,
            "to": self.to_status,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "message": self.message,
        }


Publisher = Callable[[TransitionMessage], None]


def transition(
    server_id: int,
    source: Status | str,
    target: Status | str,
    *,
    message: str,
    actor: str = "system",
    changes: Mapping[str, Any] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    publish: Publisher | None = None,
    row: Server | None = None,
) -> bool:
    """Move server `server_id` from `source` to `target`, if it is still in `source`.

    Args:
        server_id: the server.
        source: the status the caller believes the server is in.
        target: the status to move to; must be allowed from `source`.
        message: the Event's text (never a secret).
        actor: who caused it (system, webhook, cron, operator:NAME).
        changes: other columns to set in the same UPDATE (e.g. provider_id, last_error).
        clock: where `now` comes from.
        publish: called after commit with the transition, for live views.
        row: the caller's copy of the server, given the values written when the
            transition is made (so that the caller need not read it again).

    Returns:
        True when this call made the transition; False when the server was no
        longer in `source` (another job got there first): nothing is written.

    Raises:
        InvalidTransition: `source -> target` is not allowed by the state machine.
    """
    check(source, target)
    validate_actor(actor)
    source, target = Status(source), Status(target)
    now = clock.now()
    values: dict[str, Any] = dict(changes or {})
    values.update(status=target.value, status_changed_at=now, updated_at=now)
    # Rate-limit waits are counted per phase; a new phase starts without any.
    values.setdefault("throttled", 0)
    # The reconciler's finding was about the status being left; the next run judges anew.
    values.setdefault("drift", None)
    values.setdefault("drift_reason", None)
    stamp = STAMP_COLUMN.get(target)
    if stamp is not None:
        values[stamp] = now
    event = {
        "at": now,
        "kind": "transition",
        "message": message,
        "actor": actor,
        "from_status": source.value,
        "to_status": target.value,
    }
    db = current()
    if isinstance(db, peewee.PostgresqlDatabase) and not db.in_transaction():
        moved = _cas_one_statement(db, server_id, source, values, event)
    else:
        moved = _cas_in_transaction(db, server_id, source, values, event)
    if not moved:
        log.info(
            "server %s: %s -> %s skipped, no longer %s (another job moved it)",
            server_id,
            source,
            target,
            source,
        )
        return False
    if row is not None:
        for name, value in values.items():
            setattr(row, name, value)
    log.info(
        "server %s: %s -> %s (%s) by %s",
        server_id,
        source,
        target,
        message,
        actor,
        extra={"server_id": server_id, "phase": target.value},
    )
    if publish is not None:
        try:
            publish(TransitionMessage(server_id, source.value, target.value, now, actor, message))
        except Exception:
            # A live view missing one update is repaired by its periodic refresh;
            # the transition itself is committed and must not be reported as failed.
            log.warning(
                "server %s: could not publish %s -> %s", server_id, source, target, exc_info=True
            )
    return True


def _cas_in_transaction(
    db: peewee.Database,
    server_id: int,
    source: Status,
    values: Mapping[str, Any],
    event: Mapping[str, Any],
) -> bool:
    """The compare-and-set and its Event as two statements in one transaction."""
    fields = {getattr(Server, name): value for name, value in values.items()}
    with db.atomic():
        updated = (
            Server.update(fields)
            .where((Server.id == server_id) & (Server.status == source.value))
            .execute()
        )
        if not updated:
            return False
        Event.create(server=server_id, **event)
    return True


_EVENT_COLUMNS = ("at", "kind", "message", "actor", "from_status", "to_status")


@functools.lru_cache(maxsize=64)
def _cas_sql(columns: tuple[str, ...]) -> str:
    """The one-statement compare-and-set setting `columns` (PostgreSQL), built once."""
    server, event = Server._meta, Event._meta
    assignments = ", ".join(f'"{server.fields[name].column_name}" = %s' for name in columns)
    targets = ", ".join(
        f'"{c}"'
        for c in (Event.server.column_name, *(event.fields[n].column_name for n in _EVENT_COLUMNS))
    )
    placeholders = ", ".join("%s" for _ in _EVENT_COLUMNS)
    # Identifiers from the models' metadata only; every value is a bound parameter.
    return (
        f'WITH moved AS (UPDATE "{server.table_name}" SET {assignments} '  # noqa: S608
        f'WHERE "{Server.id.column_name}" = %s AND "{Server.status.column_name}" = %s '
        f'RETURNING "{Server.id.column_name}") '
        f'INSERT INTO "{event.table_name}" ({targets}) '
        f'SELECT "{Server.id.column_name}", {placeholders} FROM moved RETURNING 1'
    )


def _cas_one_statement(
    db: peewee.Database,
    server_id: int,
    source: Status,
    values: Mapping[str, Any],
    event: Mapping[str, Any],
) -> bool:
    """The compare-and-set and its Event in one statement (a data-modifying CTE).

    Atomic as any single statement is, and one round trip where the
    transaction took four (BEGIN, UPDATE, INSERT, COMMIT), each built by
    peewee: three transitions per provision made this a tenth of a worker's
    CPU (bench/provision.py, py-spy).
    """
    columns = tuple(values)
    params: list[Any] = [Server._meta.fields[name].db_value(values[name]) for name in columns]
    params += [server_id, source.value]
    params += [Event._meta.fields[name].db_value(event[name]) for name in _EVENT_COLUMNS]
    cursor = db.execute_sql(_cas_sql(columns), params)
    return cursor.fetchone() is not None


EventPublisher = Callable[[dict[str, Any]], None]
_event_publisher: EventPublisher | None = None


def set_event_publisher(publish: EventPublisher | None) -> None:
    """Where `record_event` publishes by default (a worker process sets Redis pub/sub)."""
    global _event_publisher  # noqa: PLW0603 - one per process, like logging handlers
    _event_publisher = publish


def record_event(
    server_id: int,
    kind: str,
    message: str,
    *,
    actor: str = "system",
    clock: Clock = SYSTEM_CLOCK,
    publish: EventPublisher | None = None,
) -> Event:
    """Append a non-transition Event (a retry, an error, an operator note) and publish it."""
    validate_actor(actor)
    event: Event = Event.create(
        server=server_id, at=clock.now(), kind=kind, message=message, actor=actor
    )
    sink = publish or _event_publisher
    if sink is not None:
        try:
            sink(
                {
                    "type": "event",
                    "server_id": server_id,
                    "kind": kind,
                    "message": message,
                    "actor": actor,
                    "at": event.at.isoformat(),
                }
            )
        except Exception:
            log.warning("server %s: could not publish a %s event", server_id, kind, exc_info=True)
    return event
