"""Settings: 12-factor configuration from the environment and an optional `.env`.

`SETTINGS` below is the one place that documents every setting, its default and
what it does; the README's settings table and `rachel-cloud settings --doc` are
generated from it. With nothing set, every process runs on embedded defaults in
the data directory: SQLite, an embedded Redis server and the Hetzner simulator.

Invalid values fail fast with a `SettingsError` that names the setting.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values

from core.errors import SettingsError

#: The API key and the development token the simulator accepts when no
#: `HCLOUD_TOKEN` is set. Not a secret: it only ever opens the local simulator.
SIMULATOR_DEV_TOKEN = "rachel-cloud-simulator-dev-token"  # noqa: S105 - documented dev token
HETZNER_ENDPOINT = "https://api.hetzner.cloud/v1"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Parse `90`, `90s`, `5m`, `2h`, `3d` or `250ms` into seconds.

    Raises:
        ValueError: the text is not a non-negative duration.
    """
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"expected a duration such as 90s, 5m, 2h or 3d, got {text!r}")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _parse_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}, got {value}")
        return value

    return parse


def _parse_float(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}, got {value}")
        return value

    return parse


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _parse_url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in schemes:
            raise ValueError(
                f"expected a URL starting with {' or '.join(schemes)}://, got {value!r}"
            )
        return value.rstrip("/")

    return parse


def _parse_name(text: str) -> str:
    value = text.strip().lower()
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", value):
        raise ValueError(f"expected a short hostname label (a-z, 0-9, -), got {text!r}")
    return value


def _parse_cidrs(text: str) -> tuple[str, ...]:
    ranges = _parse_list(text)
    if not ranges:
        raise ValueError("expected at least one CIDR range")
    for item in ranges:
        try:
            ipaddress.ip_network(item, strict=True)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not a CIDR range ({exc})") from None
    return ranges


def _parse_optional_cidrs(text: str) -> tuple[str, ...]:
    return _parse_cidrs(text) if text.strip() else ()


#: The phases whose time limit `RACHEL_PHASE_LIMITS` sets.
PHASE_LIMIT_PHASES = ("pending", "creating", "injecting_secrets", "deprovisioning")


def _parse_phase_limits(text: str) -> tuple[str, ...]:
    # Kept as validated `phase=duration` strings (`Settings.phase_limit` reads them),
    # so that they display like every other list setting.
    limits: dict[str, str] = {}
    for item in _parse_list(text):
        phase, sep, duration = item.partition("=")
        phase = phase.strip()
        if not sep or phase not in PHASE_LIMIT_PHASES:
            raise ValueError(
                f"expected phase=duration pairs for {', '.join(PHASE_LIMIT_PHASES)}, got {item!r}"
            )
        parse_duration(duration)
        limits[phase] = duration.strip()
    missing = [p for p in PHASE_LIMIT_PHASES if p not in limits]
    if missing:
        raise ValueError(f"missing a limit for {', '.join(missing)}")
    return tuple(f"{p}={limits[p]}" for p in PHASE_LIMIT_PHASES)


def _parse_text(text: str) -> str:
    return text.strip()


@dataclass(frozen=True)
class Setting:
    """One documented setting.

    Attributes:
        env: the environment variable that sets it.
        attr: the attribute of `Settings` that holds the parsed value.
        default: the raw default, or None when unset means "embedded default".
        doc: what it does, for the README table and `settings --doc`.
        parse: turns the raw text into the value; raises ValueError with the reason.
        secret: never printed, and its value is handed to the log redaction filter.
    """

    env: str
    attr: str
    default: str | None
    doc: str
    parse: Callable[[str], Any] = _parse_text
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    # Where things live.
    Setting(
        "RACHEL_DATA_DIR",
        "data_dir",
        "./.rachel-cloud",
        "Directory for the embedded defaults: SQLite database, embedded Redis, "
        "development keys, logs.",
    ),
    Setting(
        "DATABASE_URL",
        "database_url",
        None,
        "Database URL: `postgresql://user:pass@host/db` or `sqlite:///path`. "
        "Default: SQLite in the data directory.",
        _parse_url("sqlite", "postgresql", "postgres"),
    ),
    Setting(
        "REDIS_URL",
        "redis_url",
        None,
        "Redis URL (`redis://`, `rediss://` or `unix://`). Default: an embedded "
        "redis-server in the data directory, shared by every local process.",
        _parse_url("redis", "rediss", "unix"),
        secret=False,
    ),
    # The cloud.
    Setting(
        "HCLOUD_TOKEN",
        "hcloud_token",
        None,
        "Hetzner Cloud API token. Unset: the control plane talks to the simulator.",
        secret=True,
    ),
    Setting(
        "HCLOUD_ENDPOINT",
        "hcloud_endpoint",
        None,
        "Hetzner Cloud API base URL. Default: the real API when HCLOUD_TOKEN is "
        "set, else the simulator at http://127.0.0.1:4010/v1.",
        _parse_url("http", "https"),
    ),
    # Secrets and auth.
    Setting(
        "RACHEL_MASTER_KEYS",
        "master_keys",
        None,
        "Key ring for secrets at rest: comma-separated `KEY_ID:BASE64KEY`, the last "
        "one encrypts, all decrypt (`rachel-cloud keys generate`). Default: a "
        "development key ring in the data directory; required with HCLOUD_TOKEN.",
        _parse_list,
        secret=True,
    ),
    Setting(
        "RACHEL_WEBHOOK_SECRETS",
        "webhook_secrets",
        None,
        "Standard Webhooks signing secrets (`whsec_...`), comma-separated; any "
        "one verifies, for rotation. Default: a development secret in the data "
        "directory; required with HCLOUD_TOKEN.",
        _parse_list,
        secret=True,
    ),
    Setting(
        "RACHEL_API_KEYS",
        "api_keys",
        None,
        "API keys for the status API, comma-separated. Default: a development "
        "key in the data directory; required with HCLOUD_TOKEN.",
        _parse_list,
        secret=True,
    ),
    Setting(
        "RACHEL_PUBLIC_URL",
        "public_url",
        "http://127.0.0.1:8000",
        "Base URL the VPSs call back to (cloud-init callback). Must be HTTPS in production.",
        _parse_url("http", "https"),
    ),
    # Processes.
    Setting("RACHEL_WEB_HOST", "web_host", "127.0.0.1", "Address `rachel-cloud web` binds."),
    Setting(
        "RACHEL_WEB_PORT",
        "web_port",
        "8000",
        "Port `rachel-cloud web` listens on.",
        _parse_int(1, 65535),
    ),
    Setting(
        "RACHEL_ACCESS_LOG",
        "access_log",
        "false",
        "Whether `rachel-cloud web` logs a line per request (uvicorn's access log). Off: "
        "at webhook rates it costs more than the request; errors and refusals are logged "
        "either way, and the proxy in front usually keeps an access log.",
        _parse_bool,
    ),
    Setting(
        "RACHEL_TRUSTED_PROXIES",
        "trusted_proxies",
        "",
        "CIDR ranges of reverse proxies whose `X-Forwarded-For` the web app believes "
        "(cloud-init callbacks are bound to the server's address). Empty: none, the "
        "connection's address is the client's.",
        _parse_optional_cidrs,
    ),
    Setting(
        "RACHEL_MAX_BODY_BYTES",
        "max_body_bytes",
        "65536",
        "Largest request body the web app reads; larger requests get 413.",
        _parse_int(1024, 16 * 1024 * 1024),
    ),
    Setting(
        "RACHEL_LOG_FORMAT",
        "log_format",
        "text",
        "`text` (human-readable) or `json` (one JSON object per line).",
        _parse_choice("text", "json"),
    ),
    Setting(
        "RACHEL_LOG_LEVEL",
        "log_level",
        "info",
        "debug, info, warning or error.",
        _parse_choice("debug", "info", "warning", "error"),
    ),
    # Provisioning.
    Setting("RACHEL_LOCATION", "location", "fsn1", "Default Hetzner location for new servers."),
    Setting("RACHEL_SERVER_TYPE", "server_type", "cx23", "Default Hetzner server type."),
    Setting("RACHEL_IMAGE", "image", "debian-12", "Image new servers are created from."),
    Setting(
        "RACHEL_SLA",
        "sla_seconds",
        "120s",
        "Provisioning time target from deploy to ready.",
        parse_duration,
    ),
    Setting(
        "RACHEL_GRACE_PERIOD",
        "grace_period_seconds",
        "3d",
        "How long a lapsed subscription keeps its server before deprovisioning.",
        parse_duration,
    ),
    Setting(
        "RACHEL_NAME_PREFIX",
        "name_prefix",
        "rachel",
        "Prefix of server names (`<prefix>-<server id>`); distinct per environment "
        "sharing one Hetzner project.",
        _parse_name,
    ),
    Setting(
        "RACHEL_FIREWALL_NAME",
        "firewall_name",
        "rachel-cloud-ssh",
        "Name of the shared firewall every server is created behind (SSH only).",
    ),
    Setting(
        "RACHEL_SSH_SOURCE_RANGES",
        "ssh_source_ranges",
        "0.0.0.0/0,::/0",
        "CIDR ranges the firewall admits SSH from (the workers' addresses, ideally).",
        _parse_cidrs,
    ),
    Setting(
        "RACHEL_BOOT_TIMEOUT",
        "boot_timeout_seconds",
        "10m",
        "How long a new server has to boot and call back before it is failed and cleaned up.",
        parse_duration,
    ),
    Setting(
        "RACHEL_INJECT_TIMEOUT",
        "inject_timeout_seconds",
        "60s",
        "Time limit of one secret-injection attempt (SSH connect, write, restart).",
        parse_duration,
    ),
    Setting(
        "RACHEL_PHASE_RETRIES",
        "phase_retries",
        "6",
        "Retries of a phase after transient errors (429, 5xx, network) before the "
        "server is failed.",
        _parse_int(0, 100),
    ),
    Setting(
        "RACHEL_RETRY_BASE",
        "retry_base_seconds",
        "2s",
        "First retry delay; doubles per retry with full jitter, capped at 5 minutes.",
        parse_duration,
    ),
    Setting(
        "RACHEL_CREATE_CONCURRENCY",
        "create_concurrency",
        "20",
        "Most server creations in flight at once per Hetzner project (RQ RateLimit).",
        _parse_int(1, 10_000),
    ),
    Setting(
        "RACHEL_RATE_LIMIT_RESERVE",
        "rate_limit_reserve",
        "50",
        "API requests kept in reserve: below this many remaining, new creates wait "
        "for the bucket to refill so deprovisions and cleanups still get through.",
        _parse_int(0, 3600),
    ),
    Setting(
        "RACHEL_INSTALL_COMMAND",
        "install_command",
        "pip3 install --break-system-packages rachel8",
        "Shell command cloud-init runs to install Rachel8.",
    ),
    Setting(
        "RACHEL_SERVICE_EXEC",
        "service_exec",
        "/usr/local/bin/rachel8",
        "ExecStart of the Rachel8 systemd unit.",
    ),
    Setting(
        "RACHEL_WORKER_CLASS",
        "worker_class",
        "simple",
        "RQ worker kind: `simple` (jobs run in the worker process: 2.5x the throughput, "
        "BENCHMARKS.md) or `fork` (a work horse forked per job: a job that crashes the "
        "interpreter or leaks memory cannot take the worker with it).",
        _parse_choice("fork", "simple"),
    ),
    Setting(
        "RACHEL_CALLBACK_DISPATCH",
        "callback_dispatch",
        "enqueue",
        "How an accepted cloud-init callback starts the secret injection: `enqueue` (the "
        "callback queues it at once) or `poll` (the design this replaced, kept as the "
        "benchmarks' baseline: a cron task looks for called-back servers every "
        "RACHEL_CALLBACK_POLL_INTERVAL).",
        _parse_choice("enqueue", "poll"),
    ),
    Setting(
        "RACHEL_CALLBACK_POLL_INTERVAL",
        "callback_poll_interval_seconds",
        "5s",
        "With RACHEL_CALLBACK_DISPATCH=poll: how often the database is polled for servers "
        "whose callback came and whose injection is not queued yet.",
        parse_duration,
    ),
    # Scheduler (`rachel-cloud cron`).
    Setting(
        "RACHEL_GRACE_INTERVAL",
        "grace_interval_seconds",
        "5m",
        "How often the grace enforcer runs (warns, deprovisions lapsed subscriptions' servers).",
        parse_duration,
    ),
    Setting(
        "RACHEL_GRACE_WARNING",
        "grace_warning_seconds",
        "1d",
        "How long before the end of the grace period the customer is warned.",
        parse_duration,
    ),
    Setting(
        "RACHEL_NOTIFICATIONS",
        "notifications",
        "auto",
        "Customer notifications (grace warnings): `telegram` (through the customer's own "
        "bot), `off` (logged only), or `auto`: telegram against real Hetzner, off with the "
        "simulator.",
        _parse_choice("auto", "telegram", "off"),
    ),
    Setting(
        "RACHEL_TELEGRAM_API_URL",
        "telegram_api_url",
        "https://api.telegram.org",
        "Base URL of the Telegram Bot API the notifications are sent through.",
        _parse_url("http", "https"),
    ),
    Setting(
        "RACHEL_RECONCILE_INTERVAL",
        "reconcile_interval_seconds",
        "5m",
        "How often the reconciler compares Hetzner, the database and the job queues.",
        parse_duration,
    ),
    Setting(
        "RACHEL_RECONCILE_APPLY",
        "reconcile_apply",
        "false",
        "Whether the scheduled reconciler acts on what it finds (delete orphans, fail lost "
        "servers, fail or re-enqueue stuck ones); false: report only.",
        _parse_bool,
    ),
    Setting(
        "RACHEL_ORPHAN_MIN_AGE",
        "orphan_min_age_seconds",
        "30m",
        "Safety age: the reconciler deletes an orphan VPS (ours by its labels, unknown to "
        "the database) only when Hetzner created it at least this long ago.",
        parse_duration,
    ),
    Setting(
        "RACHEL_PHASE_LIMITS",
        "phase_limits",
        "pending=15m,creating=15m,injecting_secrets=15m,deprovisioning=30m",
        "How long a server may stay in each in-flight phase (cloud_init has its boot "
        "deadline) before the reconciler calls it stuck, as `phase=duration` pairs.",
        _parse_phase_limits,
    ),
    Setting(
        "RACHEL_DELIVERY_RETENTION",
        "delivery_retention_seconds",
        "7d",
        "How long webhook deliveries are remembered for idempotency (longer than the "
        "dashboard retries a delivery); older ones are pruned hourly.",
        parse_duration,
    ),
    Setting(
        "RACHEL_SWEEP_INTERVAL",
        "sweep_interval_seconds",
        "15s",
        "How often the sweeper re-enqueues accepted work whose job vanished and "
        "recovers jobs of killed workers.",
        parse_duration,
    ),
    Setting(
        "RACHEL_SWEEP_GRACE",
        "sweep_grace_seconds",
        "30s",
        "The sweeper leaves servers that changed status less than this long ago alone "
        "(their next job is being enqueued).",
        parse_duration,
    ),
    Setting(
        "RACHEL_ABANDONED_AFTER",
        "abandoned_after_seconds",
        "40s",
        "A started job whose worker has not sent a heartbeat for this long (or whose "
        "worker process is gone, on the same host) is abandoned: RQ retries it.",
        parse_duration,
    ),
    # Simulator (development and tests only).
    Setting("RACHEL_SIM_HOST", "sim_host", "127.0.0.1", "Address `rachel-cloud sim` binds."),
    Setting(
        "RACHEL_SIM_PORT",
        "sim_port",
        "4010",
        "Port `rachel-cloud sim` listens on.",
        _parse_int(0, 65535),
    ),
    Setting(
        "RACHEL_SIM_SSH_PORT",
        "sim_ssh_port",
        "2222",
        "SSH port of every simulated VPS (each VPS has its own loopback address).",
        _parse_int(0, 65535),
    ),
    Setting(
        "RACHEL_SIM_CREATE_TIME",
        "sim_create_seconds",
        "0.2s",
        "Simulated time from create to the server running.",
        parse_duration,
    ),
    Setting(
        "RACHEL_SIM_BOOT_TIME",
        "sim_boot_seconds",
        "0.1s",
        "Simulated time from running to SSH answering.",
        parse_duration,
    ),
    Setting(
        "RACHEL_SIM_CLOUD_INIT_TIME",
        "sim_cloud_init_seconds",
        "0.2s",
        "Simulated cloud-init run time before the VPS calls back.",
        parse_duration,
    ),
    Setting(
        "RACHEL_SIM_RATE_LIMIT",
        "sim_rate_limit",
        "3600",
        "Simulated API rate limit: bucket size in requests.",
        _parse_int(1, 10_000_000),
    ),
    Setting(
        "RACHEL_SIM_RATE_REFILL",
        "sim_rate_refill",
        "1",
        "Simulated API rate limit: requests refilled per second.",
        _parse_float(0.0, 1_000_000.0),
    ),
    Setting(
        "RACHEL_SIM_VPS_DIR",
        "sim_vps_dir",
        "",
        "Where the simulator makes its directory of simulated VPSs' root filesystems "
        "(removed when it stops). Default: `/dev/shm` when it has 1 GiB free (RAM: a VPS "
        "costs a fifth of the CPU it costs on a disk), else the system temp directory.",
    ),
    Setting(
        "RACHEL_SIM_FAULTS",
        "sim_faults",
        "",
        "Simulator fault injection at start, as JSON (see sim/README section of the "
        "README); also settable at run time through `/_sim/faults`.",
    ),
)

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
