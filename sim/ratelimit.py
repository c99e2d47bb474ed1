"""The token bucket behind the simulated API rate limit (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """A bucket of `capacity` tokens refilled at `refill_per_second`.

    Every API request takes one token; an empty bucket means 429. Time is
    passed in (monotonic seconds) so the logic is testable without sleeping.

    Attributes:
        capacity: the bucket size (`RateLimit-Limit`).
        refill_per_second: tokens added per second.
        tokens: tokens currently available (fractional while refilling).
        updated: the monotonic time `tokens` was last brought up to date.
    """

    capacity: int
    refill_per_second: float
    tokens: float = -1.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = float(self.capacity)

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.capacity), self.tokens + elapsed * self.refill_per_second)
        self.updated = now

    def take(self, now: float) -> bool:
        """Take one token at time `now`; False when the bucket is empty."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def remaining(self, now: float) -> int:
        """Whole tokens left at time `now` (`RateLimit-Remaining`)."""
        self._refill(now)
        return math.floor(self.tokens)

    def seconds_until_full(self, now: float) -> float:
        """Seconds until the bucket is full again (for `RateLimit-Reset`).

        With no refill an unfull bucket never fills; an hour stands in for
        "not soon" so the header stays a sane timestamp.
        """
        self._refill(now)
        missing = self.capacity - self.tokens
        if missing <= 0:
            return 0.0
        if self.refill_per_second <= 0:
            return 3600.0
        return missing / self.refill_per_second

    def reset(self, now: float) -> None:
        """Fill the bucket."""
        self.tokens = float(self.capacity)
        self.updated = now
