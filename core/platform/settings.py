"""Settings: 12-factor configuration from the environment and an optional `.env`.

`core.settings_table.SETTINGS` is the one place that documents every setting,
its default and what it does (`core.platform.settings_parsing` holds the parsers); the
README's settings table and `rachel-cloud settings --doc` are generated from
it. With nothing set, every process runs on embedded defaults in the data
directory: SQLite, an embedded Redis server and the Hetzner simulator.

Invalid values fail fast with a `SettingsError` that names the setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from core.errors import SettingsError
from core.platform.settings_parsing import parse_duration
from core.platform.settings_table import SETTINGS

#: The API key and the development token the simulator accepts when no
#: `HCLOUD_TOKEN` is set. Not a secret: it only ever opens the local simulator.
SIMULATOR_DEV_TOKEN = "rachel-cloud-simulator-dev-token"  # noqa: S105 - documented dev token
HETZNER_ENDPOINT = "https://api.hetzner.cloud/v1"

_BY_ATTR = {s.attr: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """The parsed, validated settings every process shares.

    Build with `Settings.load()`; tests pass an explicit `environ`.
    """

    data_dir: Path
    database_url: str | None
    redis_url: str | None
    hcloud_token: str | None
    hcloud_endpoint: str | None
    master_keys: tuple[str, ...] | None
    webhook_secrets: tuple[str, ...] | None
    api_keys: tuple[str, ...] | None
    public_url: str
    web_host: str
    web_port: int
    access_log: bool
    trusted_proxies: tuple[str, ...]
    max_body_bytes: int
    log_format: str
    log_level: str
    location: str
    server_type: str
    image: str
    sla_seconds: float
    grace_period_seconds: float
    name_prefix: str
    firewall_name: str
    ssh_source_ranges: tuple[str, ...]
    boot_timeout_seconds: float
    inject_timeout_seconds: float
    phase_retries: int
    retry_base_seconds: float
    create_concurrency: int
    rate_limit_reserve: int
    install_command: str
    service_exec: str
    worker_class: str
    callback_dispatch: str
    callback_poll_interval_seconds: float
    grace_interval_seconds: float
    grace_warning_seconds: float
    notifications: str
    telegram_api_url: str
    reconcile_interval_seconds: float
    reconcile_apply: bool
    orphan_min_age_seconds: float
    phase_limits: tuple[str, ...]
    delivery_retention_seconds: float
    sweep_interval_seconds: float
    sweep_grace_seconds: float
    abandoned_after_seconds: float
    sim_host: str
    sim_port: int
    sim_ssh_port: int
    sim_create_seconds: float
    sim_boot_seconds: float
    sim_cloud_init_seconds: float
    sim_rate_limit: int
    sim_rate_refill: float
    sim_vps_dir: str
    sim_faults: str
    source: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def load(
        cls,
        environ: Mapping[str, str] | None = None,
        env_file: str | os.PathLike[str] | None = ".env",
    ) -> Settings:
        """Read settings from `environ` (default: the process environment) and `.env`.

        The environment wins over the `.env` file, so an operator can override
        a deployed file for one run.

        Raises:
            SettingsError: a value is invalid or a production requirement is missing.
        """
        merged: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            for key, value in dotenv_values(env_file).items():
                if value is not None:
                    merged[key] = value
        merged.update(os.environ if environ is None else environ)

        values: dict[str, Any] = {}
        for spec in SETTINGS:
            raw = merged.get(spec.env)
            if raw is not None and raw.strip() == "":
                raw = None
            if raw is None:
                raw = spec.default
            if raw is None:
                values[spec.attr] = None
                continue
            try:
                values[spec.attr] = spec.parse(raw)
            except ValueError as exc:
                raise SettingsError(spec.env, str(exc)) from None
        values["data_dir"] = Path(values["data_dir"]).expanduser()
        settings = cls(**values, source=merged)
        settings._check_production()
        return settings

    def _check_production(self) -> None:
        if not self.is_production:
            return
        # Against the real cloud, development secrets kept in a local directory
        # would be both a leak and a single point of loss.
        for attr in ("master_keys", "webhook_secrets", "api_keys"):
            if not getattr(self, attr):
                raise SettingsError(
                    _BY_ATTR[attr].env,
                    "required in production (HCLOUD_TOKEN set, real Hetzner endpoint)",
                )
        if not self.public_url.startswith("https://"):
            raise SettingsError(
                "RACHEL_PUBLIC_URL",
                f"must be an https:// URL when HCLOUD_TOKEN is set, got {self.public_url!r}",
            )

    @property
    def is_production(self) -> bool:
        """True when a token is set and the endpoint is not on this machine (real Hetzner)."""
        if not self.hcloud_token:
            return False
        host = urlsplit(self.effective_hcloud_endpoint).hostname or ""
        return not (host in {"localhost", "::1"} or host.startswith("127."))

    @property
    def vps_ssh_port(self) -> int:
        """The SSH port of the VPSs: 22 on Hetzner, the simulator's otherwise."""
        return 22 if self.is_production else self.sim_ssh_port

    def phase_limit(self, phase: str) -> float | None:
        """Seconds a server may stay in `phase` before it is stuck (None: no limit here)."""
        for item in self.phase_limits:
            name, _, duration = item.partition("=")
            if name == phase:
                return parse_duration(duration)
        return None

    @property
    def notifications_enabled(self) -> bool:
        """Whether customer notifications go out (`auto`: only against real Hetzner)."""
        if self.notifications == "auto":
            return self.is_production
        return self.notifications == "telegram"

    @property
    def uses_simulator(self) -> bool:
        """True when the control plane talks to the local simulator, not Hetzner."""
        return self.hcloud_token is None

    @property
    def effective_hcloud_endpoint(self) -> str:
        """The API base URL the Hetzner adapter uses."""
        if self.hcloud_endpoint:
            return self.hcloud_endpoint
        if self.uses_simulator:
            return f"http://{self.sim_host}:{self.sim_port or 4010}/v1"
        return HETZNER_ENDPOINT

    @property
    def effective_hcloud_token(self) -> str:
        """The API token: the configured one, or the simulator's development token."""
        return self.hcloud_token or SIMULATOR_DEV_TOKEN

    @property
    def effective_database_url(self) -> str:
        """The database URL: the configured one, or SQLite in the data directory."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'rachel-cloud.db').resolve()}"

    def secret_values(self) -> list[str]:
        """Every configured secret value, for the log redaction filter."""
        found: list[str] = []
        for spec in SETTINGS:
            if not spec.secret:
                continue
            value = getattr(self, spec.attr)
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, tuple):
                for item in value:
                    found.append(item)
                    # A key ring entry is KEY_ID:KEY; the key alone is the secret.
                    if ":" in item:
                        found.append(item.split(":", 1)[1])
        return [v for v in found if v]

    def describe(self) -> list[tuple[str, str]]:
        """(name, value) pairs for display, secrets masked."""
        rows = []
        for spec in SETTINGS:
            value = getattr(self, spec.attr)
            if value is None:
                shown = "(embedded default)"
            elif spec.secret:
                shown = "(set, hidden)"
            elif isinstance(value, tuple):
                shown = ",".join(value)
            else:
                shown = str(value) if spec.env not in self.source else str(self.source[spec.env])
            rows.append((spec.env, shown))
        return rows


def settings_table_markdown() -> str:
    """The settings documentation as a Markdown table (README, `settings --doc`)."""
    lines = ["| Setting | Default | What it does |", "|---|---|---|"]
    for spec in SETTINGS:
        default = f"`{spec.default}`" if spec.default not in (None, "") else "(embedded)"
        if spec.default == "":
            default = "(none)"
        lines.append(f"| `{spec.env}` | {default} | {spec.doc} |")
    return "\n".join(lines)
