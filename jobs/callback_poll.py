"""The baseline design the callback dispatch replaced: poll the database for called-back servers.

Only with `RACHEL_CALLBACK_DISPATCH=poll`, which the benchmarks use to measure
what the old design cost (`bench/provision.py`). The cloud-init callback still
pins the host key and moves the server to injecting_secrets, but queues
nothing; every `RACHEL_CALLBACK_POLL_INTERVAL` (cron) this task finds the
servers in injecting_secrets that have no injection or finalize job for their
current entry into that phase, and queues their injection. A server therefore
waits half an interval on average, and up to a whole one, after its callback.
"""

from __future__ import annotations

import logging

from core.domain.lifecycle import Status
from core.store.db import connection
from core.store.models import Server
from jobs.context import JobContext, context
from jobs.enqueue import enqueue_injection
from jobs.queues import job_id

log = logging.getLogger(__name__)

#: The steps that carry a server through injecting_secrets.
_STEPS = ("injecting_secrets", "finalize")


def has_injection_job(server: Server) -> bool:
    """Whether the server's recorded job is an injection step of its current entry."""
    if not server.job_id:
        return False
    # The entry stamp (`-e<ms>`) makes ids of an earlier stay in the phase differ.
    prefixes = tuple(
        job_id(server.id, step, server.attempt, 0, server.status_changed_at).rsplit("-r", 1)[0]
        + "-r"
        for step in _STEPS
    )
    return bool(server.job_id.startswith(prefixes))


def enqueue_called_back(ctx: JobContext) -> int:
    """Queue the injection of every called-back server without one; returns how many."""
    queued = 0
    for server in Server.select().where(Server.status == Status.INJECTING_SECRETS.value):
        if has_injection_job(server):
            continue
        enqueue_injection(ctx.redis, server)
        queued += 1
    if queued:
        log.info("callback poll: queued the injection of %d called-back server(s)", queued)
    return queued


def poll_callbacks() -> str:
    """RQ job (cron, poll mode only): queue injections of servers that called back."""
    ctx = context()
    with connection():
        return f"queued {enqueue_called_back(ctx)}"
