"""The Server-Sent Events stream of one server, fed by the process's event hub.

Order matters: subscribe first, then read the snapshot from the database, so
that no transition falls between the two (a transition seen in both is
harmless; one seen in neither would be lost). Then every message about this
server is forwarded as it arrives (no polling), with a comment line as
heartbeat when nothing happened for a while, so proxies keep the connection.
When the client goes, Litestar cancels the stream and it leaves the hub; when
Redis goes, or the client reads too slowly for the hub (`webhook.hub`), the
stream ends with an `error` event and the client's EventSource reconnects and
gets a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import msgspec
from litestar.response import ServerSentEventMessage

from webhook.hub import Ended, Subscription
from webhook.structs import ServerStatus

HEARTBEAT_SECONDS = 15.0
#: Statuses after which nothing more happens to a server: the stream ends.
FINAL = frozenset({"deleted"})


async def server_events(
    feed: Subscription, snapshot: ServerStatus, heartbeat: float = HEARTBEAT_SECONDS
) -> AsyncIterator[ServerSentEventMessage]:
    """The stream: a `snapshot` event, then the server's live events, heartbeats between.

    Owns `feed` and closes it when the stream ends or is cancelled.
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
                async with asyncio.timeout(wait):
                    item = await feed.queue.get()
            except TimeoutError:
                yield ServerSentEventMessage(data=None, comment="keepalive")
                last_sent = time.monotonic()
                continue
            if isinstance(item, Ended):
                yield ServerSentEventMessage(event="error", data=json.dumps({"code": item.code}))
                return
            yield ServerSentEventMessage(event=str(item["type"]), data=json.dumps(item))
            last_sent = time.monotonic()
            if item.get("to") in FINAL:
                return
    finally:
        feed.close()
