"""The heartbeat wire format and its Redis store (a real Redis)."""

from __future__ import annotations

import typing

import msgspec
import pytest
import redis

from core.cloud import vps_contract as vps
from core.domain import heartbeats
from core.domain.heartbeats import (
    Heartbeat,
    HeartbeatStore,
    Recorded,
    ServiceReport,
    TelegramReport,
)


def beat(seq: int = 1, **changes: typing.Any) -> Heartbeat:
    base = Heartbeat(
        seq=seq,
        sent_at=1_796_000_000.0,
        agent=vps.AGENT_VERSION,
        service=ServiceReport("active", "running", 0, "success", 0),
        commit="63f162e9302a66344772ab23653789f701c7bcf9",
        uptime_seconds=120.0,
        disk_free_bytes=10 << 30,
        disk_total_bytes=40 << 30,
        memory_available_bytes=1 << 30,
        memory_total_bytes=4 << 30,
        telegram=TelegramReport("ok", False, 0),
    )
    return msgspec.structs.replace(base, **changes)


def test_the_get_me_answers_of_the_contract_are_the_structs() -> None:
    literal = typing.get_type_hints(TelegramReport)["get_me"]
    assert set(typing.get_args(literal)) == set(vps.GET_ME_ANSWERS)


def test_a_heartbeat_round_trips_and_unknown_fields_are_refused() -> None:
    body = heartbeats.encode(beat())
    assert heartbeats.decode(body) == beat()
    extra = body[:-1] + b',"shell":"rm -rf /"}'
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        heartbeats.decode(extra)
    with pytest.raises(msgspec.ValidationError):
        heartbeats.decode(heartbeats.encode(beat(seq=1)).replace(b'"seq":1', b'"seq":0'))


def test_record_checks_credential_address_and_sequence(redis_client: redis.Redis) -> None:
    store = HeartbeatStore(redis_client)
    credential, digest = heartbeats.new_credential()

    def send(key: str, address: str, heartbeat: Heartbeat, now: float) -> Recorded:
        return store.record(7, key, address, heartbeat, body=heartbeats.encode(heartbeat), now=now)

    assert send(credential, "10.0.0.7", beat(5), 100.0) is Recorded.UNKNOWN
    heartbeats.register(redis_client, 7, digest, "10.0.0.7")
    assert send("wrong", "10.0.0.7", beat(5), 100.0) is Recorded.DENIED
    assert send(credential, "10.0.0.8", beat(5), 100.0) is Recorded.DENIED
    assert store.latest([7]) == {}
    assert send(credential, "10.0.0.7", beat(5), 100.0) is Recorded.OK
    assert send(credential, "10.0.0.7", beat(5), 101.0) is Recorded.STALE
    assert send(credential, "10.0.0.7", beat(4), 101.0) is Recorded.STALE
    newer = beat(6, uptime_seconds=150.0)
    assert send(credential, "10.0.0.7", newer, 130.0) is Recorded.OK
    stored = store.latest([7, 8])
    assert list(stored) == [7]
    assert stored[7].heartbeat == newer
    assert stored[7].received_at == 130.0
    assert store.all_latest() == stored
    assert store.seen() == {7: 130.0}
    # A new credential (re-provision) voids the old one and the old box's sequence.
    fresh, fresh_digest = heartbeats.new_credential()
    heartbeats.register(redis_client, 7, fresh_digest, "10.0.0.9")
    assert store.all_latest() == {}
    assert send(credential, "10.0.0.7", beat(7), 140.0) is Recorded.DENIED
    assert send(fresh, "10.0.0.9", beat(1), 140.0) is Recorded.OK
    heartbeats.revoke(redis_client, 7)
    assert send(fresh, "10.0.0.9", beat(2), 150.0) is Recorded.UNKNOWN
    assert store.seen() == {}
    assert store.results() == {"ok": 3, "unknown": 2, "denied": 3, "stale": 2}


def test_the_heartbeat_url_is_the_routes() -> None:
    assert heartbeats.heartbeat_url("https://cp.example/", 12) == "https://cp.example/heartbeats/12"
