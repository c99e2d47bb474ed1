"""Operators' actions on the rollout, shared by the CLI and the TUI.

Each action is the store's change (`core.domain.rollout_store`: refused with a
clear `RolloutError`, changing nothing, when it cannot be done), then a tick of
the driver so that it takes effect at once. The tick is a convenience: the
driver's cron task picks the change up within RACHEL_ROLLOUT_INTERVAL, so a
Redis outage after the change only delays it and is reported as a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis

from core.domain import rollout_store
from core.store.models import Rollout
from jobs.enqueue import enqueue_rollout_tick

log = logging.getLogger(__name__)


#: The operators' actions by the CLI's command names: (actor, reason) -> the rollout acted on.
ACTIONS: dict[str, Callable[[str, str | None], Rollout]] = {
    "pause": lambda actor, _reason: rollout_store.pause(actor),
    "resume": lambda actor, _reason: rollout_store.resume(actor),
    "abort": lambda actor, reason: rollout_store.abort(actor, reason=reason),
    "rollback": lambda actor, _reason: rollout_store.roll_back(actor),
}


@dataclass(frozen=True)
class RolloutOutcome:
    """What an operator's action did.

    Attributes:
        rollout_id: the rollout acted on.
        state: its state once the action was applied.
        warning: the driver could not be woken (it catches up at its next cron run).
    """

    rollout_id: int
    state: str
    warning: str | None = None

    @property
    def message(self) -> str:
        """One line for the operator: the rollout's new state (and the warning, if any)."""
        text = f"rollout {self.rollout_id}: {self.state}"
        return f"{text} ({self.warning})" if self.warning else text


def wake_driver(conn: redis.Redis, rollout_id: int) -> str | None:
    """Queue a tick of the driver for `rollout_id`.

    Returns:
        None, or why it could not be queued (the cron task picks the change up anyway).
    """
    try:
        enqueue_rollout_tick(conn, rollout_id)
    except redis.RedisError as exc:
        log.warning("rollout %s: could not queue a driver tick: %s", rollout_id, exc)
        return f"could not wake the rollout driver ({exc}); its cron task will pick the change up"
    return None


def act(conn: redis.Redis, action: str, actor: str, reason: str | None = None) -> RolloutOutcome:
    """Apply an operator's `action` ("pause", "resume", "abort", "rollback") to the rollout.

    Args:
        reason: why (abort only; recorded on the fleet's timeline).

    Raises:
        RolloutError: the rollout's state refuses the action (nothing changed).
        ValueError: an unknown action.
    """
    do = ACTIONS.get(action)
    if do is None:
        raise ValueError(f"unknown rollout action {action!r}")
    rollout = do(actor, reason)
    warning = wake_driver(conn, rollout.id)
    fresh = rollout_store.latest()
    state = fresh.state if fresh is not None and fresh.id == rollout.id else "?"
    return RolloutOutcome(rollout.id, str(state), warning)
