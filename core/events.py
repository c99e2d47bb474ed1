"""Live updates: transitions and other fleet events on a Redis pub/sub channel.

Views (the TUI, the SSE stream) subscribe instead of polling. Messages are
small JSON objects and never carry a secret; anything missed (a subscriber
that was reconnecting) is repaired by the subscriber's periodic refresh from
the database, which stays the source of truth.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import redis

from core.lifecycle import Publisher, TransitionMessage

log = logging.getLogger(__name__)

CHANNEL = "rachel-cloud:events"


def publish(client: redis.Redis, payload: dict[str, Any]) -> None:
    """Publish one event message (best effort: logged, never raised)."""
    try:
        client.publish(CHANNEL, json.dumps(payload, default=str))
    except redis.RedisError as exc:
        log.warning(
            "could not publish %s for server %s: %s",
            payload.get("type"),
            payload.get("server_id"),
            exc,
        )


def redis_publisher(client: redis.Redis) -> Publisher:
    """A `core.lifecycle.Publisher` that publishes on `CHANNEL`."""

    def _publish(message: TransitionMessage) -> None:
        publish(client, message.as_dict())

    return _publish


def decode(raw: bytes | str) -> dict[str, Any] | None:
    """Parse a message from the channel; None when it is not one of ours."""
    try:
        data = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return data if isinstance(data, dict) and "type" in data else None
