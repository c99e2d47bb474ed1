"""Observability helpers: webhook result counting for `/metrics`."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

import redis
import redis.asyncio as aioredis
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from core.domain.metrics import WEBHOOK_RESULTS_KEY

log = logging.getLogger(__name__)

#: Path prefix -> the `endpoint` label of the webhook result counter.
COUNTED = (
    ("/webhooks/deploy", "deploy"),
    ("/webhooks/subscription", "subscription"),
    ("/callbacks/cloud-init/", "cloud_init_callback"),
)
_RESULTS = {
    401: "unauthorized",
    402: "refused",
    404: "not_found",
    409: "conflict",
    413: "too_large",
}


def result_label(status: int, replayed: bool) -> str:
    """The `result` label of a webhook answered with `status`."""
    if status < 300:
        return "replayed" if replayed else "accepted"
    if status >= 500:
        return "error"
    return _RESULTS.get(status, "invalid")


def count_results(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: count every webhook and callback answer by result.

    Counts whatever produced the answer (a handler, a guard, the body size
    limit), so refused signatures are counted too. The counts reach Redis in
    batches (`ResultCounts`); a Redis failure loses counts, never a request.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == ScopeType.HTTP else ""
        endpoint = next((label for prefix, label in COUNTED if path.startswith(prefix)), None)
        if endpoint is None or scope.get("method") != "POST":
            await app(scope, receive, send)
            return
        seen: dict[str, Any] = {}

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["replayed"] = any(
                    k.lower() == b"idempotent-replayed" for k, _ in message.get("headers", ())
                )
            await send(message)

        try:
            await app(scope, receive, recording_send)
        finally:
            if "status" in seen:
                await _count(scope, endpoint, result_label(seen["status"], seen["replayed"]))

    return middleware


async def _count(scope: Scope, endpoint: str, result: str) -> None:
    ctx = scope["app"].state.get("ctx")
    if ctx is not None:
        ctx.results.add(f"{endpoint}|{result}", ctx.aredis())


class ResultCounts:
    """Webhook results counted in the process and added to Redis once a second.

    A Redis round trip per request cost more than the rest of the counting;
    counts now reach Redis (and `/metrics`) within `interval` seconds, and a
    process's own `/metrics` flushes first. Best effort: counts pending when
    Redis fails, or when the process is killed, are lost.
    """

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._pending: Counter[str] = Counter()
        self._task: asyncio.Task[None] | None = None

    def add(self, field: str, client: aioredis.Redis) -> None:
        """Count one result (on the event loop); schedule a flush if none is."""
        self._pending[field] += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_later(client))

    async def _flush_later(self, client: aioredis.Redis) -> None:
        await asyncio.sleep(self.interval)
        await self.flush(client)

    async def flush(self, client: aioredis.Redis) -> None:
        """Add the pending counts to Redis now."""
        pending, self._pending = self._pending, Counter()
        if not pending:
            return
        try:
            async with client.pipeline(transaction=False) as pipe:
                for field, count in pending.items():
                    pipe.hincrby(WEBHOOK_RESULTS_KEY, field, count)
                await pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.debug("could not add %d webhook result counts: %s", pending.total(), exc)
