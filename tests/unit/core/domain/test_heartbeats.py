"""The heartbeat wire format and its Redis store (a real Redis)."""

from __future__ import annotations

import asyncio
import typing
from pathlib import Path

import msgspec
import pytest
import redis
import redis.asyncio as aioredis

from cli.embedded_redis import EmbeddedRedis
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


def _named(client: redis.Redis, name: str) -> list[dict[str, typing.Any]]:
    """The connections of the server whose client name is `name`."""
    return [c for c in client.client_list() if c.get("name") == name]


def test_record_async_takes_turns_on_one_connection(
    redis_server_url: str, redis_client: redis.Redis
) -> None:
    """The web app's hot path: 100 heartbeats at once, all recorded, one connection."""
    keys = {sid: heartbeats.new_credential() for sid in range(1, 101)}
    for sid, (_, digest) in keys.items():
        heartbeats.register(redis_client, sid, digest, f"10.0.0.{sid}")

    async def scenario() -> list[Recorded]:
        client = aioredis.Redis.from_url(redis_server_url, client_name="rc-test-held-turns")
        store = HeartbeatStore(client)
        try:
            return await asyncio.gather(
                *(
                    store.record_async(
                        sid, key, f"10.0.0.{sid}", beat(3), body=heartbeats.encode(beat(3)), now=9.0
                    )
                    for sid, (key, _) in keys.items()
                )
            )
        finally:
            assert len(_named(redis_client, "rc-test-held-turns")) == 1
            await client.aclose()

    assert asyncio.run(scenario()) == [Recorded.OK] * 100
    assert set(HeartbeatStore(redis_client).seen()) == set(keys)


def test_record_async_outlives_a_flushed_script_and_a_killed_connection(tmp_path: Path) -> None:
    """A Redis that restarted (no scripts) or dropped the connection costs no heartbeat."""
    server = EmbeddedRedis(tmp_path)  # its own server: SCRIPT FLUSH is server-wide
    url = server.ensure_running()
    admin = redis.Redis.from_url(url)
    credential, digest = heartbeats.new_credential()
    heartbeats.register(admin, 7, digest, "10.0.0.7")

    async def scenario() -> list[Recorded]:
        client = aioredis.Redis.from_url(url, client_name="rc-test-held")
        store = HeartbeatStore(client)

        async def send(seq: int) -> Recorded:
            sent = beat(seq)
            body = heartbeats.encode(sent)
            return await store.record_async(7, credential, "10.0.0.7", sent, body=body, now=seq)

        try:
            answers = [await send(1), await send(1)]
            admin.script_flush()
            answers += [await send(2), await send(3)]
            for connection in _named(admin, "rc-test-held"):
                admin.client_kill_filter(_id=connection["id"])
            answers += [await send(4), await send(5)]
            return answers
        finally:
            await client.aclose()

    try:
        answers = asyncio.run(scenario())
        stored = HeartbeatStore(admin).latest([7])
    finally:
        admin.close()
        server.stop()
    assert answers == [Recorded.OK, Recorded.STALE, *[Recorded.OK] * 4]
    assert stored[7].heartbeat == beat(5)
    assert stored[7].received_at == 5.0


def test_the_heartbeat_url_is_the_routes() -> None:
    assert heartbeats.heartbeat_url("https://cp.example/", 12) == "https://cp.example/heartbeats/12"
