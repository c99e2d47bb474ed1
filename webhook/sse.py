"""The Server-Sent Events stream of one server, fed by the Redis pub/sub channel.

Order matters: subscribe first, then read the snapshot from the database, so
that no transition falls between the two (a transition seen in both is
harmless; one seen in neither would be lost). Then every message about this
server is forwarded as it arrives (no polling), with a comment line as
heartbeat when nothing happened for a while, so proxies keep the connection.
When the client goes, Litestar cancels the stream and the subscription is
closed; when Redis goes, the stream ends and the client's EventSource
reconnects and gets a fresh snapshot.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import redis
from litestar.response import ServerSentEventMessage
from redis.asyncio.client import PubSub

from core.domain.events import channel_for, decode
from webhook.structs import ServerStatus

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 15.0
#: Statuses after which nothing more happens to a server: the stream ends.
FINAL = frozenset({"deleted"})


async def open_subscription(client: Any) -> PubSub:
    """A pub/sub connection subscribed to the events channel."""
    pubsub: PubSub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(channel_for(client))
    return pubsub


async def close_subscription(pubsub: PubSub) -> None:
    """Unsubscribe and release the connection, even while being cancelled."""
    with anyio.CancelScope(shield=True):
        try:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        except (redis.RedisError, OSError):
            log.debug("closing an SSE subscription failed", exc_info=True)


async def server_events(
    pubsub: PubSub, server_id: int, snapshot: ServerStatus, heartbeat: float = HEARTBEAT_SECONDS
) -> AsyncIterator[ServerSentEventMessage]:
    """The stream: a `snapshot` event, then this server's live events, heartbeats between.

    Owns `pubsub` and closes it when the stream ends or is cancelled.
    """
    try:
        yield ServerSentEventMessage(
            event="snapshot", data=msgspec.json.encode(snapshot).decode("utf-8")
        )
        if snapshot.status in FINAL:
            return
        last_sent = time.monotonic()
        while True:
            wait = max(0.0, last_sent + heartbeat - time.monotonic())
            try:
                message = await pubsub.get_message(timeout=wait)
            except (redis.RedisError, OSError) as exc:
                log.warning("SSE stream of server %s: Redis failed (%s)", server_id, exc)
                yield ServerSentEventMessage(
                    event="error", data=json.dumps({"code": "redis_unavailable"})
                )
                return
            data = decode(message["data"]) if message and message.get("type") == "message" else None
            if data is not None and data.get("server_id") == server_id:
                yield ServerSentEventMessage(event=str(data["type"]), data=json.dumps(data))
                last_sent = time.monotonic()
                if data.get("to") in FINAL:
                    return
            elif time.monotonic() - last_sent >= heartbeat:
                yield ServerSentEventMessage(data=None, comment="keepalive")
                last_sent = time.monotonic()
    finally:
        await close_subscription(pubsub)
