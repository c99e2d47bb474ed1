"""Deadlines as scheduled checks: a server whose callback never comes is failed.

No job sleeps while a VPS boots. The creating phase schedules this check for
the boot deadline; if the server is still waiting for cloud-init in the same
attempt by then, it fails (and its cleanup deletes the VPS).
"""

from __future__ import annotations

import logging

from core.domain.lifecycle import Status
from core.store import rows
from core.store.db import connection
from core.store.models import Server
from jobs.context import context
from jobs.outcomes import fail
from jobs.queues import FINISH, enqueue_step
from jobs.registry import JobFunction

log = logging.getLogger(__name__)


def check_boot_deadline(server_id: int, attempt: int, check: int = 0) -> str:
    """RQ job: fail the server if attempt `attempt` is still in cloud_init past its deadline."""
    ctx = context()
    with connection():
        server = rows.get(Server, server_id)
        if server is None or server.status != Status.CLOUD_INIT or server.attempt != attempt:
            return "nothing to do"
        now = ctx.clock.now()
        if server.deadline_at is not None and now < server.deadline_at:
            # Early: RQ's scheduler works in whole seconds, and machines' clocks
            # differ. Look again just after the deadline.
            remaining = (server.deadline_at - now).total_seconds()
            enqueue_step(
                ctx.redis,
                FINISH,
                JobFunction.CHECK_BOOT_DEADLINE,
                server_id,
                "boot-deadline",
                attempt=attempt,
                retry=check + 1,
                delay=remaining + 1.0,
                record=False,
                extra_args=(attempt, check + 1),
            )
            return f"deadline in {remaining:.0f}s"
        waited = ctx.settings.boot_timeout_seconds
        fail(
            ctx,
            server_id,
            Status.CLOUD_INIT,
            f"no cloud-init callback within {waited:.0f}s of creation (Hetzner server "
            f"{server.provider_id} at {server.ipv4})",
        )
        return "failed"
