"""The job system as the web app sees it: a port, implemented in `jobs`, wired by `cli`.

The web app stores what it accepted, commits, then asks for the work to be
done, through this port only: it knows neither RQ nor the job package.
`jobs.work.RQWork` is the one implementation; `cli` hands it to the web app's
context, and so do the tests that build the app.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import redis

from core.store.models import Server


class WorkQueue(Protocol):
    """What the web app asks of the job system.

    Each call takes the caller's Redis connection, so one implementation serves
    every process and connection; each is safe to repeat. Call after the
    database change that made the work due has committed.
    """

    def request_intake(self, connection: redis.Redis) -> str | None:
        """Make sure a job will carry out the deploys stored so far.

        Returns:
            The id of the job queued, or None when one was already waiting.
        """
        ...

    def injection_job_id(self, server: Server, entry: datetime) -> str | None:
        """The id `after_callback` will queue the injection of `server` under, once
        it enters injecting_secrets at `entry` (None: no job will be queued)."""
        ...

    def after_callback(
        self, connection: redis.Redis, server: Server, *, record: bool = True
    ) -> str | None:
        """Queue the secret injection of a server that called back.

        Args:
            record: store the job id on the server row (False: the transition
                already recorded `injection_job_id`).

        Returns:
            The job id, or None when something else will queue it.
        """
        ...

    def after_failure(self, connection: redis.Redis, server: Server) -> str:
        """Queue the cleanup (the deletion of the VPS) of a server that just failed.

        Returns:
            The job id.
        """
        ...

    def queue_depths(self, connection: redis.Redis) -> dict[str, int]:
        """Jobs waiting in each worker queue, by queue name (for `/metrics`)."""
        ...

    def worker_count(self, connection: redis.Redis) -> int:
        """Workers alive now: registered and heartbeating (for `/metrics`)."""
        ...
