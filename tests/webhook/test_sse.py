"""GET /api/servers/{id}/events: a snapshot, then live events from the Redis channel."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
from collections.abc import Iterator

import httpx
import peewee
import pytest
import redis

from core.domain.events import channel_for, publish, redis_publisher
from core.domain.lifecycle import transition
from core.platform.settings import Settings
from jobs.work import RQWork
from tests import factories
from tests.webhook.conftest import API_KEY, Served
from webhook.app import create_app
from webhook.context import WebContext
from webhook.hub import TOO_SLOW, EventHub


def _events(lines: Iterator[str]) -> Iterator[tuple[str | None, str]]:
    """(event name, data) per SSE message; comments come as (None, comment)."""
    event: str | None = None
    data: list[str] = []
    for line in lines:
        if line.startswith(":"):
            yield None, line[1:].strip()
        elif line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data.append(line.split(":", 1)[1].strip())
        elif line == "" and (event or data):
            yield event, "\n".join(data)
            event, data = None, []


def _unique_id() -> int:
    return secrets.randbelow(10**9) + 10**9


def _subscribers(client: redis.Redis) -> int:
    channel = channel_for(client)
    return int(dict(client.pubsub_numsub(channel))[channel.encode()])


def _wait_for(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_stream_sends_snapshot_then_the_transition_a_job_publishes(
    served: str, redis_client: redis.Redis, ctx: WebContext
) -> None:
    # The channel is shared by everything on this Redis server: ids nobody else uses.
    server = factories.server(status="pending", id=_unique_id())
    other = factories.server(status="pending", id=_unique_id())
    # Pub/sub is server-wide: count relative to whoever else listens on this Redis.
    baseline = _subscribers(redis_client)
    url = f"{served}/api/servers/{server.id}/events"
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", url, headers={"X-API-Key": API_KEY}) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response.iter_lines())
        name, data = next(events)
        assert name == "snapshot"
        assert json.loads(data)["status"] == "pending"
        # What a job does: a compare-and-set transition published on the channel.
        publisher = redis_publisher(redis_client)
        transition(other.id, "pending", "creating", message="other", publish=publisher)
        transition(server.id, "pending", "creating", message="creating the VPS", publish=publisher)
        name, data = next(e for e in events if e[0] is not None and "creating the VPS" in e[1])
        message = json.loads(data)
        assert name == "transition"
        assert (message["server_id"], message["from"], message["to"]) == (
            server.id,
            "pending",
            "creating",
        )
        # Nothing for a while: a heartbeat comment (0.3 s in these tests).
        assert next(e for e in events if e[0] is None) == (None, "keepalive")
        assert _subscribers(redis_client) >= baseline + 1
        assert ctx.hub.streams == 1
    # The client went away: the stream left the process's hub.
    _wait_for(lambda: ctx.hub.streams == 0)


def test_stream_ends_when_the_server_is_deleted(
    served: str, redis_client: redis.Redis, ctx: WebContext
) -> None:
    server = factories.server(status="deprovisioning", id=_unique_id())
    url = f"{served}/api/servers/{server.id}/events"
    with (
        httpx.Client(timeout=10) as client,
        client.stream("GET", url, headers={"X-API-Key": API_KEY}) as response,
    ):
        events = _events(response.iter_lines())
        assert next(events)[0] == "snapshot"
        publish(
            redis_client,
            {
                "type": "transition",
                "server_id": server.id,
                "from": "deprovisioning",
                "to": "deleted",
            },
        )
        assert [e[0] for e in events if e[0] is not None][-1] == "transition"
    _wait_for(lambda: ctx.hub.streams == 0)


def test_deployments_on_other_redis_databases_are_not_heard(redis_server_url: str) -> None:
    from urllib.parse import urlsplit

    if urlsplit(redis_server_url).scheme == "unix":
        pytest.skip("database numbers are exercised on a TCP Redis URL")
    base = redis_server_url.rsplit("/", 1)[0]
    ours, theirs = redis.Redis.from_url(f"{base}/3"), redis.Redis.from_url(f"{base}/4")
    assert channel_for(ours) != channel_for(theirs)
    listener = ours.pubsub(ignore_subscribe_messages=True)
    listener.subscribe(channel_for(ours))
    publish(theirs, {"type": "transition", "server_id": 1})
    publish(ours, {"type": "transition", "server_id": 2})
    heard = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and len(heard) < 2:
        message = listener.get_message(timeout=0.1)
        if message is not None:
            heard.append(message["data"])
    assert heard == [b'{"type": "transition", "server_id": 2}']
    listener.close()


STREAMS = 120  # more than the 100 connections of redis-py's default pool
CAP = STREAMS


@pytest.fixture
def capped_app(
    db: peewee.Database, redis_client: redis.Redis, web_settings: Settings
) -> Iterator[tuple[str, WebContext]]:
    """The app served with RACHEL_SSE_MAX_STREAMS=CAP."""
    ctx = WebContext.build(dataclasses.replace(web_settings, sse_max_streams=CAP), RQWork())
    with Served(create_app(ctx, heartbeat=5)) as base:
        yield base, ctx


async def _stream(
    client: httpx.AsyncClient, url: str, opened: asyncio.Event, count: list[int], marker: str
) -> str:
    """Open one stream, read its snapshot, then return the data of the event with `marker`."""
    async with client.stream("GET", url) as response:
        assert response.status_code == 200, await response.aread()
        lines = response.aiter_lines()
        async for line in lines:
            if line.startswith("event: snapshot"):
                break
        count[0] += 1
        if count[0] == STREAMS:
            opened.set()
        async for line in lines:
            if line.startswith("data:") and marker in line:
                return line
    raise AssertionError("the stream ended without the event")


def test_more_streams_than_a_redis_pool_all_get_events_and_readiness_holds(
    capped_app: tuple[str, WebContext], redis_client: redis.Redis
) -> None:
    base, ctx = capped_app
    server = factories.server(status="pending", id=_unique_id())
    url = f"{base}/api/servers/{server.id}/events"
    marker = f"hub-{secrets.token_hex(4)}"

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        headers = {"X-API-Key": API_KEY}
        async with httpx.AsyncClient(timeout=20, limits=limits, headers=headers) as client:
            opened, count = asyncio.Event(), [0]
            streams = [
                asyncio.create_task(_stream(client, url, opened, count, marker))
                for _ in range(STREAMS)
            ]
            waiting = asyncio.create_task(opened.wait())
            done, _ = await asyncio.wait([waiting, *streams], return_when="FIRST_COMPLETED")
            for task in done - {waiting}:
                task.result()  # a stream that failed: its assertion
            assert ctx.hub.streams == STREAMS
            # Readiness does not share what the streams use.
            ready = await client.get(f"{base}/readyz")
            assert ready.status_code == 200, ready.text
            # Over the cap: 503, Retry-After and the usual JSON error, never a 500.
            refused = await client.get(url)
            assert refused.status_code == 503, refused.text
            assert int(refused.headers["retry-after"]) > 0
            assert refused.json()["error"]["code"] == "too_many_streams"
            publish(redis_client, {"type": "transition", "server_id": server.id, "to": marker})
            received = await asyncio.wait_for(asyncio.gather(*streams), timeout=10)
            assert all(marker in line for line in received)

    asyncio.run(scenario())
    # One subscription for the process, whatever the number of streams, and every place freed.
    _wait_for(lambda: ctx.hub.streams == 0)


def test_a_slow_client_is_dropped_without_holding_back_the_others(
    redis_server_url: str, redis_client: redis.Redis
) -> None:
    server_id = _unique_id()

    async def scenario() -> None:
        hub = EventHub(redis_server_url, max_streams=10, queue_size=3)
        try:
            slow = await hub.subscribe(server_id)  # never reads
            fast = await hub.subscribe(server_id)
            heard: list[object] = []

            async def read() -> None:
                while len(heard) < 6:
                    heard.append(await fast.queue.get())

            reader = asyncio.create_task(read())
            for n in range(6):
                await asyncio.to_thread(
                    publish, redis_client, {"type": "transition", "server_id": server_id, "n": n}
                )
            await asyncio.wait_for(reader, timeout=5)
            assert [item["n"] for item in heard] == list(range(6))  # type: ignore[index]
            # The slow one was ended (its client reconnects for a fresh snapshot).
            assert slow.queue.get_nowait() is TOO_SLOW and slow.queue.empty()
            assert hub.streams == 1
        finally:
            await hub.close()

    asyncio.run(scenario())
