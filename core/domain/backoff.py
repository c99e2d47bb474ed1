"""Retry policy: exponential backoff with full jitter, as pure functions.

`delay(retry)` for retry 0, 1, 2, ... is uniform in [0, min(cap, base * 2**retry)]
("full jitter": retries from many workers spread out instead of arriving
together). A provider's own hint (`Retry-After`, a rate-limit reset) is a
floor: we never come back before the provider said we may.

A phase's time limit (RACHEL_PHASE_LIMITS) bounds its retries too: no retry
is scheduled past it, and a phase already past it is given up, so a server
cannot wait in a phase without end (not even for the rate limit). Rate-limited
waits are ordered by age: the longer a server has waited in its phase, the
narrower its jitter, so the oldest come back first and newcomers cannot keep
postponing them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

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


#: Errors that say the Hetzner project's request budget is spent: a wait, not a failure.
THROTTLE_CODES = frozenset({"rate_limit_exceeded", "rate_limit_reserve"})


@dataclass(frozen=True)
class Decision:
    """Whether and when to try a phase again after an error.

    Attributes:
        retry: try again (else give up).
        throttled: the error was the rate limit: this wait is not counted.
        used: retries used up so far, throttled waits excluded (after this one).
        wait: seconds until the next try.
        past_limit: given up because the phase's time limit is (or would be) passed.
    """

    retry: bool
    throttled: bool
    used: int
    wait: float
    past_limit: bool = False


def decide(
    retries: int,
    throttled: int,
    max_retries: int,
    *,
    transient: bool,
    code: str | None,
    base: float,
    hint: float = 0.0,
    waited: float = 0.0,
    limit: float | None = None,
    rand: Callable[[], float] = random.random,
) -> Decision:
    """The retry decision for a phase that has retried `retries` times, `throttled` of them
    waiting for the rate limit.

    A rate-limited request is the whole project's budget running out, not
    this server's trouble: it waits for the budget (`hint`, the provider's
    reset) as often as it takes, without using up the phase's retries, but
    never past the phase's time limit. Its jitter above the hint shrinks as
    the server's time in the phase nears the limit (oldest first).

    Args:
        retries: retries so far in this phase, throttled waits included.
        throttled: of those, waits for the rate limit.
        max_retries: counted retries allowed per phase.
        transient: whether the error may go away.
        code: the error's code (rate-limit codes are waits, not failures).
        base: the first retry's backoff ceiling.
        hint: the provider's earliest time to come back, in seconds.
        waited: seconds the server has been in this phase so far.
        limit: the phase's time limit in seconds (None: unbounded).
        rand: a uniform [0, 1) source (tests pass a fixed one).
    """
    used = retries - throttled
    if transient and limit is not None and waited >= limit:
        return Decision(False, False, used, 0.0, past_limit=True)
    if transient and code in THROTTLE_CODES:
        spread = ceiling(used, base) * (1.0 - waited / limit if limit else 1.0)
        decision = Decision(True, True, used, hint + rand() * spread)
    elif not should_retry(used, max_retries, transient):
        return Decision(False, False, used, 0.0)
    else:
        decision = Decision(True, False, used + 1, delay(used, base, floor=hint, rand=rand))
    if limit is None or waited + decision.wait <= limit:
        return decision
    if waited + hint > limit:
        # The provider will not have us back before the limit: waiting is pointless.
        return Decision(False, decision.throttled, decision.used, 0.0, past_limit=True)
    # One last try, at the limit.
    return Decision(True, decision.throttled, decision.used, limit - waited)
