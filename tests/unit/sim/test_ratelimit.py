"""The simulator's token bucket: Hetzner's rate limit."""

from __future__ import annotations

import pytest

from sim.ratelimit import TokenBucket


def test_bucket_empties_and_refills() -> None:
    bucket = TokenBucket(capacity=3, refill_per_second=1.0, updated=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.remaining(100.0) == 0
    assert bucket.seconds_until_full(100.0) == pytest.approx(3.0)
    assert bucket.take(101.0) is True  # one token refilled after a second
    assert bucket.remaining(200.0) == 3  # never above capacity


def test_bucket_without_refill_stays_empty() -> None:
    bucket = TokenBucket(capacity=1, refill_per_second=0.0, updated=0.0)
    assert bucket.take(0.0) and not bucket.take(1000.0)
    assert bucket.seconds_until_full(1000.0) == 3600.0
    bucket.reset(1000.0)
    assert bucket.take(1000.0)
