"""GET /api/servers/{id}/events: a snapshot, then live events from the Redis channel."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator

import httpx
import redis

from core.domain.events import channel_for, publish, redis_publisher
from core.domain.lifecycle import transition
from tests import factories
from tests.webhook.conftest import API_KEY


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
    served: str, redis_client: redis.Redis
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
    # The client went away: the stream's subscription is closed.
    _wait_for(lambda: _subscribers(redis_client) <= baseline)


def test_stream_ends_when_the_server_is_deleted(served: str, redis_client: redis.Redis) -> None:
    server = factories.server(status="deprovisioning", id=_unique_id())
    baseline = _subscribers(redis_client)
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
    _wait_for(lambda: _subscribers(redis_client) <= baseline)


def test_deployments_on_other_redis_databases_are_not_heard(redis_server_url: str) -> None:
    from urllib.parse import urlsplit

    if urlsplit(redis_server_url).scheme == "unix":
        import pytest

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
