"""Compare-and-set transitions with their Events, on SQLite and PostgreSQL."""

import threading

import peewee
import pytest

from core.domain.lifecycle import Status, TransitionMessage, record_event, transition
from core.errors import InvalidTransition
from core.platform.clock import ManualClock
from core.store.db import current
from core.store.models import Event, Server
from tests import factories


def test_transition_stamps_and_writes_its_event(db: peewee.Database) -> None:
    clock = ManualClock()
    srv = factories.server()
    seen: list[TransitionMessage] = []
    assert transition(
        srv.id,
        "pending",
        "creating",
        message="creating the VPS",
        actor="system",
        changes={"attempt": 1},
        clock=clock,
        publish=seen.append,
    )
    row = Server.get_by_id(srv.id)
    assert row.status == "creating" and row.attempt == 1
    assert row.creating_at == clock.now() == row.status_changed_at
    (event,) = list(row.events)
    assert (event.from_status, event.to_status, event.kind, event.actor) == (
        "pending",
        "creating",
        "transition",
        "system",
    )
    assert seen[0].as_dict()["to"] == "creating"


def test_a_transition_applies_once(db: peewee.Database) -> None:
    srv = factories.server()
    assert transition(srv.id, Status.PENDING, Status.CREATING, message="first")
    assert not transition(srv.id, Status.PENDING, Status.CREATING, message="replayed job")
    assert Event.select().where(Event.server == srv.id).count() == 1


def test_forbidden_transition_raises_and_writes_nothing(db: peewee.Database) -> None:
    srv = factories.server()
    with pytest.raises(InvalidTransition):
        transition(srv.id, "pending", "ready", message="skip ahead")
    assert Server.get_by_id(srv.id).status == "pending"
    assert Event.select().count() == 0


def test_invalid_actor_is_refused(db: peewee.Database) -> None:
    srv = factories.server()
    with pytest.raises(ValueError):
        transition(srv.id, "pending", "creating", message="x", actor="mallory")
    assert Server.get_by_id(srv.id).status == "pending"


def test_failed_publisher_does_not_undo_the_transition(db: peewee.Database) -> None:
    srv = factories.server()

    def broken(_: TransitionMessage) -> None:
        raise ConnectionError("redis down")

    assert transition(srv.id, "pending", "creating", message="x", publish=broken)
    assert Server.get_by_id(srv.id).status == "creating"


def test_racing_threads_transition_exactly_once(db: peewee.Database, database_url: str) -> None:
    srv = factories.server()
    current().close()
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        with current().connection_context():
            results.append(transition(srv.id, "pending", "creating", message="race"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    current().connect(reuse_if_open=True)
    assert sorted(results) == [False] * 7 + [True]
    assert Event.select().where(Event.server == srv.id).count() == 1


def test_record_event(db: peewee.Database) -> None:
    srv = factories.server()
    record_event(srv.id, "retry", "attempt 2 after 429", actor="cron")
    assert [e.kind for e in srv.events] == ["retry"]
