"""Redis clients: one way to connect to the server every process meets at.

The URL comes from `REDIS_URL`; where it is not set, the command line (the
composition root) starts or joins the data directory's embedded server
(`cli.embedded_redis`) and hands its URL down.
"""

from __future__ import annotations

import redis

from core.errors import RedisUnavailable
from core.platform.settings import Settings


def configured_url(settings: Settings) -> str:
    """`REDIS_URL`.

    Raises:
        RedisUnavailable: it is not set (only the command line starts an embedded server).
    """
    if not settings.redis_url:
        raise RedisUnavailable(
            "REDIS_URL is not set here; start this process with `rachel-cloud`,"
            " which starts the embedded Redis server, or set REDIS_URL"
        )
    return settings.redis_url


def connect(url: str, *, check: bool = True) -> redis.Redis:
    """A Redis client for the server at `url`.

    Raises:
        RedisUnavailable: `check` is set and the server does not answer.
    """
    # No CLIENT SETINFO: two more round trips on every new connection (which
    # Redis before 7.2 answers with an error), and every forked work horse
    # opens one.
    client = redis.Redis.from_url(
        url, socket_connect_timeout=5, health_check_interval=30, driver_info=None
    )
    if check:
        ping(client, url)
    return client


def ping(client: redis.Redis, url: str | None = None) -> None:
    """Raises RedisUnavailable unless the server answers PING."""
    try:
        client.ping()
    except redis.RedisError as exc:
        where = describe_url(url) if url else "Redis"
        raise RedisUnavailable(f"{where} does not answer: {exc}") from exc


def describe_url(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user + ':***' if ':' in creds else '***'}@{host}"
    return url


__all__ = ["configured_url", "connect", "describe_url", "ping"]
