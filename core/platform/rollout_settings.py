"""The rollout settings: the defaults of `rachel-cloud rollout start`, the driver's tick.

Declared apart from `core.platform.settings` (which inherits them, as it does
`core.platform.health_settings`); documented and parsed like every other setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.platform.settings_parsing import parse_duration, parse_float, parse_int, parse_period
from core.platform.settings_spec import DeclaredSettings, setting


@dataclass(frozen=True, kw_only=True)
class RolloutSettings(DeclaredSettings):
    """How Rachel8 releases roll out across the fleet (`core.domain.rollouts`)."""

    rollout_max_in_flight: int = setting(
        "RACHEL_ROLLOUT_MAX_IN_FLIGHT",
        "10",
        "Default of `rollout start --max-in-flight`: the most servers a rollout updates (or "
        "rolls back) at once.",
        parse_int(1, 1000),
    )
    rollout_gate_seconds: float = setting(
        "RACHEL_ROLLOUT_GATE",
        "60s",
        "Default of `rollout start --gate`: how long each updated server's heartbeats must "
        "stay healthy on the new commit before it counts as updated.",
        parse_period,
    )
    rollout_soak_seconds: float = setting(
        "RACHEL_ROLLOUT_SOAK",
        "60s",
        "Default of `rollout start --soak`: the wait after each wave before the next one "
        "(0: none).",
        parse_duration,
    )
    rollout_halt_share: float = setting(
        "RACHEL_ROLLOUT_HALT_SHARE",
        "0.3",
        "Default of `rollout start --halt-share`: a wave whose failed share is above this "
        "halts the rollout (the canary halts at any failure), and every server it switched "
        "is rolled back.",
        parse_float(0.0, 0.99),
    )
    rollout_interval_seconds: float = setting(
        "RACHEL_ROLLOUT_INTERVAL",
        "5s",
        "How often the rollout driver looks at a rollout in progress (a cron task; each "
        "finished update also wakes it).",
        parse_period,
    )
    rollout_stuck_seconds: float = setting(
        "RACHEL_ROLLOUT_STUCK_AFTER",
        "15m",
        "A server's update or rollback job that has not moved on after this long (its worker "
        "died) is queued again; the jobs are idempotent. Keep it above an update's longest "
        "prepare (clone and `bun install`).",
        parse_period,
    )
