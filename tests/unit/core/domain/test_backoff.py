import pytest

from core.domain import backoff
from core.domain.backoff import ceiling, delay, should_retry


def test_ceiling_doubles_and_caps() -> None:
    assert [ceiling(n, 2.0, 60) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert ceiling(10_000, 1.0, 300) == 300
    with pytest.raises(ValueError):
        ceiling(-1, 1.0)


def test_full_jitter_spans_zero_to_ceiling() -> None:
    assert delay(3, 2.0, rand=lambda: 0.0) == 0.0
    assert delay(3, 2.0, rand=lambda: 0.5) == 8.0
    assert delay(3, 2.0, rand=lambda: 0.999999) < 16.0


def test_provider_hint_is_a_floor() -> None:
    assert delay(0, 2.0, floor=30.0, rand=lambda: 0.9) == 30.0
    assert delay(5, 2.0, floor=1.0, rand=lambda: 0.5) == 32.0


@pytest.mark.parametrize(
    ("retry", "maximum", "transient", "expected"),
    [
        (0, 3, True, True),
        (2, 3, True, True),
        (3, 3, True, False),
        (0, 3, False, False),
        (0, 0, True, False),
    ],
)
def test_should_retry(retry: int, maximum: int, transient: bool, expected: bool) -> None:
    assert should_retry(retry, maximum, transient) is expected


def test_rate_limit_waits_are_not_counted_and_honour_the_hint() -> None:
    d = backoff.decide(
        7, 7, 3, transient=True, code="rate_limit_exceeded", base=1.0, hint=4.0, rand=lambda: 0.5
    )
    # Spread above the hint (not merged into it), so waiters do not all come back at once.
    assert (d.retry, d.throttled, d.used, d.wait) == (True, True, 0, 4.5)


def test_other_transient_errors_count_only_their_own_retries() -> None:
    d = backoff.decide(5, 3, 3, transient=True, code="server_error", base=1.0, rand=lambda: 0.5)
    assert (d.retry, d.throttled, d.used) == (True, False, 3)
    assert d.wait == 2.0  # full jitter at 0.5 of retry 2's ceiling (1 s x 2**2)
    out = backoff.decide(6, 3, 3, transient=True, code="server_error", base=1.0)
    assert (out.retry, out.used) == (False, 3)


def test_a_permanent_error_never_retries_even_when_named_like_a_limit() -> None:
    d = backoff.decide(0, 0, 3, transient=False, code="rate_limit_exceeded", base=1.0)
    assert d.retry is False


def throttled(
    waited: float, limit: float | None = 60.0, hint: float = 1.0, roll: float = 0.9
) -> backoff.Decision:
    return backoff.decide(
        40,
        40,
        3,
        transient=True,
        code="rate_limit_exceeded",
        base=8.0,
        hint=hint,
        waited=waited,
        limit=limit,
        rand=lambda: roll,
    )


def test_a_phase_past_its_limit_is_given_up_even_when_rate_limited() -> None:
    d = throttled(waited=60.0)
    assert (d.retry, d.past_limit) == (False, True)
    other = backoff.decide(
        1, 0, 3, transient=True, code="server_error", base=1.0, waited=61.0, limit=60.0
    )
    assert (other.retry, other.past_limit) == (False, True)


def test_no_retry_is_scheduled_past_the_limit() -> None:
    d = backoff.decide(  # 28.8 s of backoff would pass 60 s: the last try at 60 s
        2,
        0,
        6,
        transient=True,
        code="server_error",
        base=8.0,
        waited=55.0,
        limit=60.0,
        rand=lambda: 0.9,
    )
    assert (d.retry, d.wait, d.past_limit) == (True, 5.0, False)
    late = throttled(waited=59.0, hint=2.0)  # the provider will not have us back in time
    assert (late.retry, late.past_limit) == (False, True)


def test_rate_limited_servers_that_waited_longer_come_back_first() -> None:
    # Same roll: the older server's jitter window is narrower (oldest first);
    # across every roll, the oldest never waits longer than the newest's worst case.
    young, old = throttled(waited=1.0), throttled(waited=50.0)
    assert young.wait > old.wait >= 1.0
    assert throttled(waited=50.0, roll=0.999).wait < throttled(waited=1.0, roll=0.2).wait
    assert throttled(waited=10.0, limit=None).wait == 1.0 + 0.9 * 8.0  # no limit: full spread


def test_a_permanent_error_past_the_limit_says_permanent() -> None:
    d = backoff.decide(
        0, 0, 3, transient=False, code="invalid_input", base=1.0, waited=99.0, limit=1.0
    )
    assert (d.retry, d.past_limit) == (False, False)
