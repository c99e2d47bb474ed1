"""The job registry: every RQ job function, named once.

Each member's value is the dotted path RQ stores as a job's `func_name` and a
worker imports to run it. Those strings are a contract with Redis: jobs
queued by one release are run by workers of the next, and the job views
(`jobs.inspect`, the TUI) show them, so a member's value never changes; a
renamed function keeps its old path here until no queued job can hold it.

Enqueuers name jobs by member, never by string, so a reader (and mypy) can go
from any enqueue to its function. Members are paths rather than the functions
themselves because the job modules enqueue one another (creating queues the
boot deadline, the deadline queues itself): importing the functions here would
make every job module import every other. `tests/unit/jobs/test_registry.py`
checks that each path resolves to its function and that no job is missing.
"""

from __future__ import annotations

from enum import StrEnum


class JobFunction(StrEnum):
    """An RQ job function, by the dotted path RQ stores for it.

    Hand RQ `member.path`, never the member: RQ pickles what it is given, and a
    pickled member would name this class in Redis, not the plain path.
    """

    # Per-server steps: `fn(server_id, *extra_args)` via `jobs.queues.enqueue_step`.
    CREATE_SERVER = "jobs.creating.create_server"
    CHECK_BOOT_DEADLINE = "jobs.deadlines.check_boot_deadline"
    INJECT_SECRETS = "jobs.injecting.inject_secrets"
    FINALIZE = "jobs.injecting.finalize"
    DEPROVISION = "jobs.deprovisioning.deprovision"
    CLEANUP = "jobs.cleanup.cleanup"
    # The intake of stored deploys: `jobs.enqueue.request_intake`.
    CARRY_OUT_DEPLOYS = "jobs.intake.carry_out_deploys"
    # Scheduled tasks: registered with RQ's cron scheduler by `jobs.cron`.
    ENFORCE_GRACE = "jobs.grace.enforce_grace"
    RECONCILE = "jobs.reconcile.reconcile"
    SWEEP = "jobs.sweeper.sweep"
    PRUNE_DELIVERIES = "jobs.housekeeping.prune_deliveries"
    POLL_CALLBACKS = "jobs.callback_poll.poll_callbacks"
    CHECK_HEALTH = "jobs.health.check_health"
    ADVANCE_ROLLOUTS = "jobs.rollout.advance_rollouts"
    # The rollout driver's tick: `fn(rollout_id)` via `jobs.enqueue.enqueue_rollout_tick`.
    ADVANCE_ROLLOUT = "jobs.rollout.advance_rollout"
    # Fleet health: `fn(server_id, ...)` queued by the health task.
    PROBE_SERVER = "jobs.repair.probe_server"
    REPAIR_SERVER = "jobs.repair.repair_server"
    ASK_HEARTBEAT = "jobs.repair.ask_heartbeat"
    TELL_OWNER = "jobs.notifying.tell_owner"
    ALERT_OPERATORS = "jobs.notifying.alert_operators"
    # Rollouts: `fn(target_id)` on the rc-update queue (`jobs.update`, `jobs.rollback`).
    UPDATE_SERVER = "jobs.update.update_server"
    ROLLBACK_SERVER = "jobs.rollback.rollback_server"
    # Snapshot images: `fn(image_id)` on the rc-update queue, and the image check (cron).
    BUILD_IMAGE = "jobs.images.build_image"
    CHECK_IMAGES = "jobs.images.check_images"
    # The warm pool's refill (cron).
    REFILL_POOL = "jobs.pool.refill_pool"

    @property
    def path(self) -> str:
        """The dotted path as a plain `str`: what RQ is given and stores."""
        return self.value


#: The scheduled tasks: `jobs.cron` registers their functions (RQ's cron
#: scheduler takes callables, and derives these same paths from them).
CRON_JOBS = frozenset(
    {
        JobFunction.ENFORCE_GRACE,
        JobFunction.RECONCILE,
        JobFunction.SWEEP,
        JobFunction.PRUNE_DELIVERIES,
        JobFunction.POLL_CALLBACKS,
        JobFunction.CHECK_HEALTH,
        JobFunction.ADVANCE_ROLLOUTS,
        JobFunction.CHECK_IMAGES,
        JobFunction.REFILL_POOL,
    }
)
