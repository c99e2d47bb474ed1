"""Housekeeping: forget webhook deliveries older than their retention (cron, hourly).

A delivery record is what makes a retried webhook idempotent. Senders retry a
delivery for hours or days under the same id; past `RACHEL_DELIVERY_RETENTION`
a record protects nothing (a replayed body also fails the signature's
five-minute window), so it goes.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from core.domain import deliveries
from core.store.db import connection
from jobs.context import context
from jobs.taskrun import task_run

log = logging.getLogger(__name__)

INTERVAL_SECONDS = 3600


def prune_deliveries() -> str:
    """RQ job (cron): delete delivery records older than the retention."""
    ctx = context()
    with task_run(ctx.redis, "prune") as summary:
        if summary is None:
            return "skipped: already running"
        retention = timedelta(seconds=ctx.settings.delivery_retention_seconds)
        with connection():
            deleted = deliveries.prune(retention, clock=ctx.clock)
        if deleted:
            summary.acted["deliveries deleted"] += deleted
            summary.details.append(f"deleted {deleted} webhook deliveries older than {retention}")
        return summary.line()
