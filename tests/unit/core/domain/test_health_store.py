"""The health task's working state in Redis (a real Redis)."""

from __future__ import annotations

from datetime import datetime

import redis

from core.domain.health import Finding, HealthState, Problem, Verdict, restarts_grew
from core.domain.health_store import (
    ACTED_KEY,
    FINDINGS_KEY,
    MEMO_KEY,
    HealthMemory,
    Memo,
    epoch,
    from_epoch,
)

T0 = datetime(2026, 3, 1, 12, 0, 0, 250000)
GONE = Verdict(HealthState.UNHEALTHY, Problem.UNREACHABLE, "VPS unreachable over SSH (x)")


def test_times_round_trip() -> None:
    assert from_epoch(epoch(T0)) == T0


def test_memos_findings_and_actions_round_trip(redis_client: redis.Redis) -> None:
    memory = HealthMemory(redis_client)
    assert memory.recall().memos == {} and memory.finding(1) is None
    memory.save({1: Memo(7, 2, True), 2: Memo(3, -1, False)})
    memory.store_finding(1, Finding(GONE, T0, repeats=2))
    memory.record_action(1, T0)
    recall = memory.recall()
    assert recall.memos == {1: Memo(7, 2, True), 2: Memo(3, -1, False)}
    assert recall.findings == {1: Finding(GONE, T0, 2)}
    assert recall.acted == {1: T0} and memory.acted_at(1) == T0
    assert memory.finding(1) == Finding(GONE, T0, 2)


def test_garbage_is_skipped_not_fatal(redis_client: redis.Redis) -> None:
    redis_client.hset(MEMO_KEY, mapping={"1": "nonsense", "x": "1 2 0", "2": "1 2 0"})
    redis_client.hset(FINDINGS_KEY, mapping={"1": "{", "2": '{"state": "sick"}'})
    recall = HealthMemory(redis_client).recall()
    assert recall.memos == {2: Memo(1, 2, False)} and recall.findings == {}


def test_save_drops_stale_findings_and_forgets_gone_servers(redis_client: redis.Redis) -> None:
    memory = HealthMemory(redis_client)
    for server_id in (1, 2, 3):
        memory.save({server_id: Memo(1, 0, False)})
        memory.store_finding(server_id, Finding(GONE, T0))
        memory.record_action(server_id, T0)
    memory.save({}, stale_findings=[1], forget=[3])
    recall = memory.recall()
    assert set(recall.findings) == {2} and set(recall.memos) == {1, 2}
    assert set(recall.acted) == {1, 2}
    assert redis_client.hlen(ACTED_KEY) == 2
    memory.save({})  # nothing to do: no round trip, no error


def test_one_probe_or_repair_per_server(redis_client: redis.Redis) -> None:
    memory = HealthMemory(redis_client)
    assert memory.claim(5, "probe")
    assert not memory.claim(5, "restart")
    assert memory.claim(6, "restart")
    assert 0 < redis_client.ttl("rc:health:busy:5") <= 600, "a lost job's claim expires"
    memory.release(5)
    assert memory.claim(5, "restart")


def test_owner_told_once_per_cooldown(redis_client: redis.Redis) -> None:
    memory = HealthMemory(redis_client)
    assert not memory.owner_told_recently(5, 1800)
    assert memory.owner_told_recently(5, 1800)
    assert not memory.owner_told_recently(6, 1800)
    assert 1790 < redis_client.ttl("rc:health:owner-told:5") <= 1800


def test_a_restart_of_ours_sets_the_remembered_count_back_to_zero(
    redis_client: redis.Redis,
) -> None:
    memory = HealthMemory(redis_client)
    memory.save({7: Memo(41, 3, True)})
    memory.restarts_reset(7)
    memory.restarts_reset(8)  # never judged: compared with 0 all the same
    memos = memory.recall().memos
    assert memos[7] == Memo(41, 0, True) and memos[8] == Memo(0, 0, False)
    # The next heartbeat: one crash since our restart (NRestarts 1) reads as one.
    assert restarts_grew(memos[7].restarts, 1)
