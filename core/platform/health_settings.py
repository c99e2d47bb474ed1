"""The fleet-health settings: heartbeats, health, repair, the herd guard, alerts.

Declared apart from the rest of `core.platform.settings` (which inherits them,
so `Settings` has one flat set of fields) to keep each module readable; they
are documented and parsed exactly like every other setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.platform.settings_parsing import (
    parse_bool,
    parse_duration,
    parse_float,
    parse_int,
    parse_period,
    parse_url,
)
from core.platform.settings_spec import DeclaredSettings, setting


@dataclass(frozen=True, kw_only=True)
class HealthSettings(DeclaredSettings):
    """How ready servers are watched and repaired (`core.domain.health`)."""

    heartbeat_interval_seconds: float = setting(
        "RACHEL_HEARTBEAT_INTERVAL",
        "30s",
        "How often each VPS's agent pushes a heartbeat (its systemd timer's period, written "
        "into the user data of servers created from then on).",
        parse_period,
    )
    heartbeat_missing_seconds: float = setting(
        "RACHEL_HEARTBEAT_MISSING",
        "75s",
        "A ready server whose last heartbeat is older than this is probed over SSH (the "
        "pinned host key) to tell a down service from a broken agent from an unreachable VPS. "
        "Keep it above two heartbeat intervals.",
        parse_period,
    )
    health_interval_seconds: float = setting(
        "RACHEL_HEALTH_INTERVAL",
        "10s",
        "How often the health task reads the fleet's latest heartbeats and decides each "
        "server's health (a cron task).",
        parse_period,
    )
    repair_enabled: bool = setting(
        "RACHEL_REPAIR",
        "true",
        "Whether unhealthy servers are repaired automatically (restart the service, then "
        "reboot the VPS); false: health is still decided and alerted on.",
        parse_bool,
    )
    repair_max_restarts: int = setting(
        "RACHEL_REPAIR_RESTARTS",
        "3",
        "Service restarts tried within RACHEL_REPAIR_WINDOW before the VPS is rebooted "
        "through Hetzner.",
        parse_int(1, 20),
    )
    repair_window_seconds: float = setting(
        "RACHEL_REPAIR_WINDOW",
        "30m",
        "The window the repair attempts of one incident are counted in.",
        parse_period,
    )
    repair_cooldown_seconds: float = setting(
        "RACHEL_REPAIR_COOLDOWN",
        "30m",
        "After restarts and a reboot failed, the circuit breaker stops repairing the server "
        "for this long (it is marked unhealthy and operators are alerted); also the least "
        "time between two notifications of one owner.",
        parse_duration,
    )
    herd_share: float = setting(
        "RACHEL_HERD_SHARE",
        "0.2",
        "Herd guard: when more than this share of the ready fleet turned unhealthy within "
        "RACHEL_HERD_WINDOW, automatic repair pauses (the cause is shared) and operators are "
        "alerted once; it resumes when the share drops, or by `rachel-cloud health resume`.",
        parse_float(0.0, 1.0),
    )
    herd_window_seconds: float = setting(
        "RACHEL_HERD_WINDOW",
        "5m",
        "The window of the herd guard.",
        parse_period,
    )
    herd_min_servers: int = setting(
        "RACHEL_HERD_MIN_SERVERS",
        "10",
        "The herd guard trips only when at least this many servers turned unhealthy (a small "
        "fleet's single failure is not a herd).",
        parse_int(1, 1_000_000),
    )
    operator_webhook_url: str | None = setting(
        "RACHEL_OPERATOR_WEBHOOK_URL",
        None,
        "Where operator alerts are POSTed as JSON (a chat webhook, an incident tool); unset: "
        "alerts are logged and kept on the timeline only.",
        parse_url("http", "https"),
    )
