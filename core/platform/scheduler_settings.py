"""The scheduler's settings: what `rachel-cloud cron`'s tasks do, and how often.

Declared apart from `core.platform.settings` (which inherits them, as it does
`core.platform.health_settings`) to keep each module readable; documented and
parsed like every other setting. The grace enforcer, owner notifications and
the Telegram check of deploys' bot tokens, the reconciler and its phase limits,
the pruning of webhook deliveries, and the sweeper of lost work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.platform.settings_parsing import (
    parse_bool,
    parse_choice,
    parse_duration,
    parse_phase_limits,
    parse_url,
)
from core.platform.settings_spec import DeclaredSettings, setting


@dataclass(frozen=True, kw_only=True)
class SchedulerSettings(DeclaredSettings):
    """What the scheduled tasks do and how often they run (`jobs.cron`)."""

    grace_interval_seconds: float = setting(
        "RACHEL_GRACE_INTERVAL",
        "5m",
        "How often the grace enforcer runs (warns, deprovisions lapsed subscriptions' servers).",
        parse_duration,
    )
    grace_warning_seconds: float = setting(
        "RACHEL_GRACE_WARNING",
        "1d",
        "How long before the end of the grace period the customer is warned.",
        parse_duration,
    )
    notifications: str = setting(
        "RACHEL_NOTIFICATIONS",
        "auto",
        "Owner notifications (grace warnings; the assistant down and back again): "
        "`telegram` (through the customer's own bot), `off` (logged only), or `auto`: "
        "telegram against real Hetzner, and with the simulator only when "
        "RACHEL_TELEGRAM_API_URL is set (the simulator's Telegram, say).",
        parse_choice("auto", "telegram", "off"),
    )
    telegram_api_url: str = setting(
        "RACHEL_TELEGRAM_API_URL",
        "https://api.telegram.org",
        "Base URL of the Telegram Bot API the notifications and the deploy's bot token "
        "check (RACHEL_TELEGRAM_CHECK) go through.",
        parse_url("http", "https"),
    )
    telegram_check: str = setting(
        "RACHEL_TELEGRAM_CHECK",
        "auto",
        "Ask Telegram (`getMe`, through RACHEL_TELEGRAM_API_URL) whether a deploy's bot "
        "token is valid before storing it: `on`, `off`, or `auto`: on against real Hetzner, "
        "and with the simulator only when RACHEL_TELEGRAM_API_URL is set. A token Telegram "
        "rejects is refused with 422; an unreachable Telegram does not block the deploy.",
        parse_choice("auto", "on", "off"),
    )
    reconcile_interval_seconds: float = setting(
        "RACHEL_RECONCILE_INTERVAL",
        "5m",
        "How often the reconciler compares Hetzner, the database and the job queues.",
        parse_duration,
    )
    reconcile_apply: bool = setting(
        "RACHEL_RECONCILE_APPLY",
        "false",
        "Whether the scheduled reconciler acts on what it finds (delete orphans, fail lost "
        "servers, fail or re-enqueue stuck ones); false: report only.",
        parse_bool,
    )
    orphan_min_age_seconds: float = setting(
        "RACHEL_ORPHAN_MIN_AGE",
        "30m",
        "Safety age: the reconciler deletes an orphan VPS (ours by its labels, unknown to "
        "the database) only when Hetzner created it at least this long ago.",
        parse_duration,
    )
    phase_limits: Mapping[str, float] = setting(
        "RACHEL_PHASE_LIMITS",
        "pending=15m,creating=15m,injecting_secrets=15m,deprovisioning=30m",
        "How long a server may stay in each in-flight phase (cloud_init has its boot "
        "deadline), as `phase=duration` pairs. creating and injecting_secrets fail by "
        "themselves at their limit, rate-limit waits included; the reconciler calls any "
        "phase stuck past it.",
        parse_phase_limits,
    )
    delivery_retention_seconds: float = setting(
        "RACHEL_DELIVERY_RETENTION",
        "7d",
        "How long webhook deliveries are remembered for idempotency (longer than the "
        "dashboard retries a delivery); older ones are pruned hourly.",
        parse_duration,
    )
    sweep_interval_seconds: float = setting(
        "RACHEL_SWEEP_INTERVAL",
        "15s",
        "How often the sweeper re-enqueues accepted work whose job vanished and "
        "recovers jobs of killed workers.",
        parse_duration,
    )
    sweep_grace_seconds: float = setting(
        "RACHEL_SWEEP_GRACE",
        "30s",
        "The sweeper leaves servers that changed status less than this long ago alone "
        "(their next job is being enqueued).",
        parse_duration,
    )
    abandoned_after_seconds: float = setting(
        "RACHEL_ABANDONED_AFTER",
        "40s",
        "A started job whose worker has not sent a heartbeat for this long (or whose "
        "worker process is gone, on the same host) is abandoned: RQ retries it.",
        parse_duration,
    )

    def phase_limit(self, phase: str) -> float | None:
        """Seconds a server may stay in `phase` before it is stuck (None: no limit here)."""
        return self.phase_limits.get(phase)
