"""When a cron task runs next (`jobs.inspect.next_run`, the jobs screen and `rachel-cloud jobs`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from jobs.inspect import next_run

NOW = datetime(2026, 1, 1, 12, 0, 0)


def test_next_run_is_the_last_run_plus_the_interval() -> None:
    assert next_run(NOW - timedelta(seconds=10), 15, NOW) == (NOW + timedelta(seconds=5), False)


def test_a_next_run_at_or_before_now_is_due() -> None:
    assert next_run(NOW - timedelta(seconds=15), 15, NOW) == (NOW, True)
    assert next_run(NOW - timedelta(hours=1), 15, NOW) == (NOW - timedelta(seconds=3585), True)


def test_a_task_that_never_ran_is_due_with_no_time() -> None:
    assert next_run(None, 15, NOW) == (None, True)
