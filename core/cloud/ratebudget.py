"""The Hetzner project's API budget, shared by every worker through Redis.

Hetzner allows 3,600 requests an hour per project, refilled at one a second,
and reports the bucket in `RateLimit-*` headers. The adapter records what each
response said (and counts every call by method and path) in two Redis hashes,
so that every worker, the TUI and the metrics see the freshest state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

RATE_KEY = "rachel-cloud:hcloud:rate"
CALLS_KEY = "rachel-cloud:hcloud:calls"


@dataclass
class RateBudget:
    """The project's rate-limit state, as the last response anyone saw reported it."""

    limit: int | None = None
    remaining: int | None = None
    reset: float | None = None  # UNIX time at which the bucket is full again

    def wait_for(self, reserve: int, now: float) -> float:
        """Seconds to wait before spending one more request while keeping `reserve`.

        Hetzner refills one request per second, so `need` missing requests
        take `need` seconds (bounded by the reset time).
        """
        if self.remaining is None or self.remaining > reserve:
            return 0.0
        need = reserve - self.remaining + 1
        until_reset = max(0.0, (self.reset or now) - now)
        return float(min(need, until_reset) if until_reset else need)


def read_budget(store: redis.Redis) -> RateBudget | None:
    """The rate-limit state the workers last saw (for the TUI and metrics), if any."""
    try:
        raw = store.hgetall(RATE_KEY)
    except redis.RedisError:
        return None
    if not raw:
        return None
    data = {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]
    return RateBudget(int(data["limit"]), int(data["remaining"]), float(data["reset"]))


def read_call_counts(store: redis.Redis) -> dict[str, int]:
    """Hetzner API calls by `METHOD /path` counted by every worker so far."""
    try:
        raw = store.hgetall(CALLS_KEY)
    except redis.RedisError:
        return {}
    return {k.decode(): int(v) for k, v in raw.items()}  # type: ignore[union-attr]


def record_call(store: redis.Redis, key: str, budget: RateBudget | None, seen: float) -> None:
    """Count one API call (`METHOD /path`) and store the budget its response reported."""
    try:
        pipe = store.pipeline(transaction=False)
        pipe.hincrby(CALLS_KEY, key, 1)
        if budget is not None:
            pipe.hset(
                RATE_KEY,
                mapping={
                    "limit": budget.limit or 0,
                    "remaining": budget.remaining or 0,
                    "reset": budget.reset or 0,
                    "seen": seen,
                },
            )
        pipe.execute()
    except redis.RedisError as exc:
        log.debug("could not record Hetzner rate-limit state: %s", exc)
