"""Observability helpers: webhook result counting and queue depths for `/metrics`."""

from __future__ import annotations

import logging
from typing import Any

import redis
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from rq import Queue

from core.metrics import WEBHOOK_RESULTS_KEY
from jobs.queues import WORKER_QUEUES

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


def queue_depths(client: redis.Redis) -> dict[str, int]:
    """Jobs waiting in each worker queue (RQ's own counts)."""
    return {name: Queue(name, connection=client).count for name in WORKER_QUEUES}


def count_results(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: count every webhook and callback answer by result in Redis.

    Counts whatever produced the answer (a handler, a guard, the body size
    limit), so refused signatures are counted too. Best effort: a Redis
    failure loses one count, never the request.
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
    if ctx is None:
        return
    try:
        await ctx.aredis().hincrby(WEBHOOK_RESULTS_KEY, f"{endpoint}|{result}", 1)
    except (redis.RedisError, OSError) as exc:
        log.debug("could not count a webhook result: %s", exc)
