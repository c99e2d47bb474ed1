"""`core.domain.work.WorkQueue` over RQ: what the web app asks of the job system."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import redis
from rq import Queue, Worker

from core.domain.work import WorkQueue
from core.store.models import Server
from jobs import enqueue
from jobs.queues import WORKER_QUEUES


class RQWork:
    """The job system's port for the web app: the enqueue helpers, and queue depths.

    Stateless: the caller passes its Redis connection, and the callback
    dispatch mode is the process's (`jobs.enqueue.callback_dispatch`).
    """

    def request_intake(self, connection: redis.Redis) -> str | None:
        """See `jobs.enqueue.request_intake`."""
        return enqueue.request_intake(connection)

    def injection_job_id(self, server: Server, entry: datetime) -> str | None:
        """See `jobs.enqueue.injection_job_id`."""
        return enqueue.injection_job_id(server, entry)

    def after_callback(
        self, connection: redis.Redis, server: Server, *, record: bool = True
    ) -> str | None:
        """See `jobs.enqueue.after_callback`."""
        return enqueue.after_callback(connection, server, record=record)

    def after_failure(self, connection: redis.Redis, server: Server) -> str:
        """See `jobs.enqueue.enqueue_cleanup`."""
        return enqueue.enqueue_cleanup(connection, server)

    def queue_depths(self, connection: redis.Redis) -> dict[str, int]:
        """Jobs waiting in each worker queue (RQ's own counts)."""
        return {name: Queue(name, connection=connection).count for name in WORKER_QUEUES}

    def worker_count(self, connection: redis.Redis) -> int:
        """Live workers: RQ expires a dead worker's key, and `Worker.all` skips those."""
        return len(Worker.all(connection=connection))


if TYPE_CHECKING:
    # mypy checks `cli`'s wiring here: `cli` itself is outside its packages.
    _CONFORMS: WorkQueue = RQWork()
