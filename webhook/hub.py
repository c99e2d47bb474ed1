"""One Redis pub/sub subscription per web process, fanned out to its SSE streams.

A subscription per stream took a connection from the process's Redis pool
per stream: past 100 streams (redis-py's default pool size) new streams
failed with `MaxConnectionsError` and `/readyz`, sharing that pool, answered
503. The hub subscribes once, on its own connection, and routes each message
by server id to the queues of the streams watching that server. A queue is
bounded: a client that does not read is dropped (its stream ends with a
`too_slow` error event, its EventSource reconnects and gets a fresh snapshot)
rather than holding messages, or anyone else, back. The number of streams is
capped (`RACHEL_SSE_MAX_STREAMS`); past the cap a stream is refused with 503
and `Retry-After`.

Everything runs on the server's event loop (the collector's cleanup of a
stream that never ran is handed back to it: `Subscription.bind`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Final

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub

from core.domain.events import channel_for, decode
from core.errors import RedisUnavailable
from webhook.errors import RequestRejected

log = logging.getLogger(__name__)

#: Messages a stream may have waiting before its client counts as too slow.
QUEUE_SIZE = 256
#: How long a client refused for the cap is asked to wait.
RETRY_AFTER_SECONDS = 5
SUBSCRIBE_TIMEOUT_SECONDS = 5.0


class Ended:
    """Why a stream's feed ended (put in its queue instead of a message)."""

    def __init__(self, code: str) -> None:
        self.code = code


#: The client did not keep up; the hub no longer feeds it.
TOO_SLOW: Final = Ended("too_slow")
#: The hub's Redis connection failed; every stream ends.
REDIS_FAILED: Final = Ended("redis_unavailable")

Item = dict[str, Any] | Ended


class Subscription:
    """One stream's feed: the messages about one server, in order."""

    def __init__(self, hub: EventHub, server_id: int, size: int) -> None:
        self.hub = hub
        self.server_id = server_id
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=size)

    def offer(self, item: Item) -> bool:
        """Queue `item` without waiting; False when the queue is full."""
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            return False
        return True

    def end(self, why: Ended) -> None:
        """Stop feeding this stream: what is queued is dropped, `why` is its last item."""
        self.close()
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(why)

    def close(self) -> None:
        """Leave the hub (idempotent; frees this stream's place under the cap)."""
        self.hub.leave(self)

    def bind(self, stream: object) -> None:
        """Leave the hub when `stream` is garbage, should it never run its own cleanup.

        A stream that is dropped before the response started (the client went
        first) never runs its `finally`; without this its place under the cap
        would be lost for good. The collector may run in any thread: the hub is
        left on its own loop.
        """
        loop = asyncio.get_running_loop()
        weakref.finalize(stream, _call_soon, loop, self.close)


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: the hub is gone with it
        loop.call_soon_threadsafe(callback)


class EventHub:
    """The process's one subscription to the events channel, shared by its streams.

    Args:
        url: the Redis URL (the hub opens its own connection from it, so that
            streams never take connections the rest of the app needs).
        max_streams: most streams at once; more are refused with 503.
        queue_size: messages a stream may have waiting (see `QUEUE_SIZE`).
    """

    def __init__(self, url: str, max_streams: int, queue_size: int = QUEUE_SIZE) -> None:
        self.url = url
        self.max_streams = max_streams
        self.queue_size = queue_size
        self._subscriptions: set[Subscription] = set()
        self._by_server: defaultdict[int, set[Subscription]] = defaultdict(set)
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._start_lock: asyncio.Lock | None = None

    @property
    def streams(self) -> int:
        """Streams fed now."""
        return len(self._subscriptions)

    async def subscribe(self, server_id: int) -> Subscription:
        """A feed of `server_id`'s messages, from the moment Redis confirmed the subscription.

        The caller closes it when its stream ends, and binds it to the stream
        (`Subscription.bind`) in case the stream never runs.

        Raises:
            RequestRejected: 503 `too_many_streams` (with Retry-After), at the cap.
            RedisUnavailable: the channel cannot be subscribed to.
        """
        if self.streams >= self.max_streams:
            log.warning(
                "SSE stream of server %s refused: %d streams open, RACHEL_SSE_MAX_STREAMS=%d",
                server_id,
                self.streams,
                self.max_streams,
            )
            raise RequestRejected(
                f"too many event streams on this process ({self.max_streams}); "
                f"retry in {RETRY_AFTER_SECONDS} s",
                code="too_many_streams",
                status=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        # Counted before the first stream's wait for Redis, so the cap holds then too.
        subscription = Subscription(self, server_id, self.queue_size)
        self._subscriptions.add(subscription)
        self._by_server[server_id].add(subscription)
        try:
            await self._ensure_started()
        except BaseException:
            subscription.close()
            raise
        return subscription

    def leave(self, subscription: Subscription) -> None:
        """Stop feeding `subscription` (idempotent)."""
        self._subscriptions.discard(subscription)
        watchers = self._by_server.get(subscription.server_id)
        if watchers is not None:
            watchers.discard(subscription)
            if not watchers:
                del self._by_server[subscription.server_id]

    async def _ensure_started(self) -> None:
        if self._reader is not None and not self._reader.done():
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._reader is not None and not self._reader.done():
                return
            await self._drop_connection()
            self._client = aioredis.Redis.from_url(
                self.url, socket_connect_timeout=5, health_check_interval=30, max_connections=1
            )
            pubsub = self._client.pubsub()
            self._pubsub = pubsub
            try:
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
                    await pubsub.subscribe(channel_for(self._client))
                    # Confirmed: anything published from now on reaches the hub.
                    while (await pubsub.get_message(timeout=1.0) or {}).get("type") != "subscribe":
                        pass
            except (redis.RedisError, OSError, TimeoutError) as exc:
                await self._drop_connection()
                raise RedisUnavailable(f"cannot subscribe to the events channel: {exc}") from exc
            self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))
            log.info("SSE hub subscribed to %s", channel_for(self._client))

    async def _read(self, pubsub: PubSub) -> None:
        """Route every message until Redis fails or the hub closes."""
        try:
            while True:
                message = await pubsub.get_message(timeout=None)
                if message is not None and message.get("type") == "message":
                    self._route(message["data"])
        except (redis.RedisError, OSError) as exc:
            log.warning("SSE hub: Redis failed (%s); ending %d streams", exc, self.streams)
            self._end_all()
        except Exception:
            # A bug here would leave every stream waiting for nothing: end them.
            log.exception("SSE hub: routing failed; ending %d streams", self.streams)
            self._end_all()

    def _end_all(self) -> None:
        """End every stream (their clients reconnect, and a later stream resubscribes)."""
        for subscription in list(self._subscriptions):
            subscription.end(REDIS_FAILED)

    def _route(self, raw: bytes | str) -> None:
        data = decode(raw)
        server_id = data.get("server_id") if data is not None else None
        if data is None or not isinstance(server_id, int):
            return
        for subscription in list(self._by_server.get(server_id, ())):
            if not subscription.offer(data):
                log.warning(
                    "SSE stream of server %s dropped: its client is %d messages behind",
                    server_id,
                    subscription.queue.qsize(),
                )
                subscription.end(TOO_SLOW)

    async def _drop_connection(self) -> None:
        pubsub, client = self._pubsub, self._client
        self._pubsub = self._client = None
        with contextlib.suppress(redis.RedisError, OSError):
            if pubsub is not None:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            if client is not None:
                await client.aclose()

    async def close(self) -> None:
        """Unsubscribe and release the connection (the app's shutdown)."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        await self._drop_connection()
