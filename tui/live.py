"""The live-update listener: Redis pub/sub in a worker thread, batched, self-healing.

No Textual here: the app runs `listen` in a thread worker and passes callbacks
that hop back onto the UI thread.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import redis

from core.domain.events import channel_for, decode

log = logging.getLogger(__name__)

#: Events arriving within this window are fetched and applied together.
BATCH_SECONDS = 0.1
#: Most server ids fetched in one batch (a storm is applied in slices).
BATCH_MAX = 2000
POLL_SECONDS = 0.1
RECONNECT_MIN = 0.25
RECONNECT_MAX = 5.0


def server_ids(raw: bytes | str) -> int | None:
    """The server id a channel message is about, or None."""
    data = decode(raw)
    if data is None:
        return None
    value = data.get("server_id")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _sleep(seconds: float, stopped: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not stopped() and time.monotonic() < deadline:
        time.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def listen(
    client: redis.Redis,
    on_batch: Callable[[set[int]], None],
    on_connection: Callable[[bool, str], None],
    stopped: Callable[[], bool],
) -> None:
    """Subscribe to the events channel until `stopped()`; reconnect when the link drops.

    Args:
        client: Redis.
        on_batch: called with the ids of the servers that changed (a batch).
        on_connection: called with (True, "") once subscribed, (False, reason) when lost.
        stopped: polled; True ends the loop.
    """
    delay = RECONNECT_MIN
    while not stopped():
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(channel_for(client))
            on_connection(True, "")
            delay = RECONNECT_MIN
            pending: set[int] = set()
            first = 0.0
            while not stopped():
                message = pubsub.get_message(timeout=POLL_SECONDS)
                if message is not None and message.get("type") == "message":
                    sid = server_ids(message["data"])
                    if sid is not None:
                        if not pending:
                            first = time.monotonic()
                        pending.add(sid)
                if pending and (
                    message is None
                    or time.monotonic() - first >= BATCH_SECONDS
                    or len(pending) >= BATCH_MAX
                ):
                    batch, pending = pending, set()
                    on_batch(batch)
        except (redis.RedisError, OSError) as exc:
            log.warning("live updates lost: %s", exc)
            on_connection(False, str(exc) or type(exc).__name__)
            _sleep(delay, stopped)
            delay = min(delay * 2, RECONNECT_MAX)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                pubsub.close()
