"""Retry policy: exponential backoff with full jitter, as pure functions.

`delay(retry)` for retry 0, 1, 2, ... is uniform in [0, min(cap, base * 2**retry)]
("full jitter": retries from many workers spread out instead of arriving
together). A provider's own hint (`Retry-After`, a rate-limit reset) is a
floor: we never come back before the provider said we may.
"""

from __future__ import annotations

import random
from collections.abc import Callable

DEFAULT_CAP_SECONDS = 300.0


def ceiling(retry: int, base: float, cap: float = DEFAULT_CAP_SECONDS) -> float:
    """The largest delay of retry number `retry` (0-based)."""
    if retry < 0:
        raise ValueError("retry must be >= 0")
    # min() before the power would still overflow for huge retries; clamp the exponent.
    return float(min(cap, base * float(2 ** min(retry, 32))))


def delay(
    retry: int,
    base: float,
    cap: float = DEFAULT_CAP_SECONDS,
    *,
    floor: float = 0.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retry number `retry`.

    Args:
        retry: 0 for the first retry.
        base: the first retry's ceiling.
        cap: no delay exceeds this (unless `floor` does).
        floor: the provider's hint; the result is at least this.
        rand: a uniform [0, 1) source (tests pass a fixed one).
    """
    return max(floor, rand() * ceiling(retry, base, cap))


def should_retry(retry: int, max_retries: int, transient: bool) -> bool:
    """Whether to retry after an error: only transient errors, and only so often."""
    return transient and retry < max_retries
