"""The herd guard: pure assessment, its Redis state, the operator's pause and resume."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import peewee
import pytest
import redis

from core.domain.herd import (
    Change,
    HerdPolicy,
    HerdState,
    HerdStore,
    assess,
    counting_since,
    held,
    pause_repair,
    resume_repair,
)
from core.platform.clock import ManualClock
from core.store.models import Event
from tests.conftest import make_settings

T0 = datetime(2026, 3, 1, 12, 0, 0)
POLICY = HerdPolicy(share=0.2, window_seconds=300, min_servers=10)


def test_trips_above_the_share_and_the_minimum() -> None:
    clear = HerdState()
    assert assess(20, 100, clear, POLICY).change == Change.NONE  # exactly the share
    tripped = assess(21, 100, clear, POLICY)
    assert (tripped.change, tripped.tripped) == (Change.TRIP, True)
    assert tripped.reason == (
        "21 of 100 servers (21%) turned unhealthy within 300s (limit 20%, at least 10)"
    )
    # A small fleet's failures are not a herd below the minimum.
    assert assess(9, 12, clear, POLICY).change == Change.NONE
    assert assess(10, 12, clear, POLICY).change == Change.TRIP
    assert assess(0, 0, clear, POLICY).change == Change.NONE


def test_clears_when_the_share_drops_and_keeps_its_reason_meanwhile() -> None:
    state = HerdState(tripped_at=T0, reason="30 of 100 servers...")
    kept = assess(25, 100, state, POLICY)
    assert (kept.change, kept.tripped, kept.reason) == (Change.NONE, True, "30 of 100 servers...")
    cleared = assess(20, 100, state, POLICY)
    assert (cleared.change, cleared.tripped) == (Change.CLEAR, False)
    assert cleared.reason.endswith("the herd recovered")
    assert assess(15, 100, state, POLICY).change == Change.CLEAR  # below the minimum too


def test_counting_since_is_anchored_at_the_trip_and_after_a_resume() -> None:
    now = T0 + timedelta(hours=1)
    assert counting_since(HerdState(), now, POLICY) == now - timedelta(seconds=300)
    tripped = HerdState(tripped_at=T0)
    assert counting_since(tripped, now, POLICY) == T0 - timedelta(seconds=300)
    resumed = HerdState(resumed_at=now - timedelta(seconds=10))
    assert counting_since(resumed, now, POLICY) == now - timedelta(seconds=10)
    long_ago = HerdState(resumed_at=T0 - timedelta(days=1))
    assert counting_since(long_ago, now, POLICY) == now - timedelta(seconds=300)


def test_policy_from_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, RACHEL_HERD_SHARE="0.3", RACHEL_HERD_WINDOW="2m", RACHEL_HERD_MIN_SERVERS="4"
    )
    assert HerdPolicy.from_settings(settings) == HerdPolicy(0.3, 120, 4)


def test_the_store_trips_once_and_clears(redis_client: redis.Redis) -> None:
    store = HerdStore(redis_client)
    assert store.read() == (HerdState(), None)
    assert store.trip(T0, "30 of 100")
    assert not store.trip(T0 + timedelta(seconds=10), "again")
    state, pause = store.read()
    assert (state.tripped_at, state.reason, pause) == (T0, "30 of 100", None)
    assert held(state, pause) == "the herd guard holds repairs: 30 of 100"
    assert store.clear()
    assert not store.clear()
    assert store.read() == (HerdState(), None)
    assert held(HerdState(), None) is None


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def fleet_events() -> list[tuple[str, str, str]]:
    query = Event.select().where(Event.server.is_null()).order_by(Event.id)
    return [(e.kind, e.actor, e.message) for e in query]


def test_an_operator_pauses_and_resumes_repair(
    db: peewee.Database, redis_client: redis.Redis, clock: ManualClock
) -> None:
    store = HerdStore(redis_client)
    done = pause_repair(redis_client, "operator:alice", "Telegram outage", clock)
    assert done == "automatic repair paused fleet-wide by operator:alice: Telegram outage"
    again = pause_repair(redis_client, "operator:bob", "me too", clock)
    assert again == "automatic repair was already paused"
    state, pause = store.read()
    assert pause is not None and (pause.at, pause.by, pause.reason) == (
        T0,
        "operator:alice",
        "Telegram outage",
    )
    assert held(state, pause) == "automatic repair paused by operator:alice (Telegram outage)"
    store.trip(T0, "herd")
    clock.advance(60)
    resumed = resume_repair(redis_client, "operator:bob", clock)
    assert "cleared the herd guard and lifted the pause" in resumed
    state, pause = store.read()
    assert pause is None and not state.tripped
    assert (state.resumed_at, state.resumed_by) == (T0 + timedelta(seconds=60), "operator:bob")
    nothing = resume_repair(redis_client, "operator:bob", clock)
    assert nothing.startswith("nothing to resume")
    assert fleet_events() == [
        ("herd", "operator:alice", done),
        ("herd", "operator:bob", resumed),
    ]


def test_a_bad_actor_is_refused_before_anything_changes(
    db: peewee.Database, redis_client: redis.Redis
) -> None:
    with pytest.raises(ValueError, match="invalid actor"):
        pause_repair(redis_client, "mallory", "x")
    with pytest.raises(ValueError, match="invalid actor"):
        resume_repair(redis_client, "operator:not a name")
    assert HerdStore(redis_client).read() == (HerdState(), None)
    assert fleet_events() == []
