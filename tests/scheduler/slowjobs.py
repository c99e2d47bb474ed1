"""Job functions for the killed-worker test (imported by a worker in another process)."""

from __future__ import annotations

import os
import time

from rq import get_current_job


def slow_once(marker: str) -> str:
    """The first run records its pid and hangs (to be killed); later runs finish."""
    job = get_current_job()
    assert job is not None
    if job.connection.set(marker, os.getpid(), nx=True):
        time.sleep(120)
    return "done"
