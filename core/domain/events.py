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

from core.domain.lifecycle import Publisher, TransitionMessage

log = logging.getLogger(__name__)

CHANNEL = "rachel-cloud:events"


def channel_for(client: Any) -> str:
    """The events channel of the Redis database `client` uses.

    Redis pub/sub ignores database numbers, so two deployments sharing one
    Redis server on different databases would otherwise hear each other's
    events (and a customer's SSE stream could show another deployment's server
    of the same id). Publishers and subscribers of one deployment use the same
    Redis URL, hence the same channel.
    """
    db = client.connection_pool.connection_kwargs.get("db", 0)
    return f"{CHANNEL}:{db}"


def publish(client: redis.Redis, payload: dict[str, Any]) -> None:
    """Publish one event message (best effort: logged, never raised)."""
    try:
        client.publish(channel_for(client), json.dumps(payload, default=str))
    except redis.RedisError as exc:
        log.warning(
            "could not publish %s for server %s: %s",
            payload.get("type"),
            payload.get("server_id"),
            exc,
        )


def redis_publisher(client: redis.Redis) -> Publisher:
    """A `core.lifecycle.Publisher` that publishes on the client's events channel."""

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
