"""Settings: 12-factor configuration from the environment and an optional `.env`.

`Settings` declares every setting of the control plane once, as a typed field
whose `setting(...)` carries its variable, default, documentation and parser
(`core.platform.settings_spec`; the parsers are `core.platform.settings_parsing`).
`SETTINGS`, the README's settings table and `rachel-cloud settings --doc` are
generated from it. With nothing set, every process runs on embedded defaults in
the data directory: SQLite, an embedded Redis server and the Hetzner simulator.

The simulator declares its own settings (`sim.settings`); it shares the few
the control plane needs to reach it (`RACHEL_SIM_HOST`, `RACHEL_SIM_PORT`,
`RACHEL_SIM_SSH_PORT`), which are declared here.

Every value is parsed once, at load; an invalid one fails fast with a
`SettingsError` that names the setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import SettingsError
from core.platform.health_settings import HealthSettings
from core.platform.image_settings import ImageSettings
from core.platform.install_parsing import (
    parse_commit,
    parse_linux_user,
    parse_repo_url,
    parse_version,
)
from core.platform.placement_settings import PlacementSettings
from core.platform.pool_settings import PoolSettings
from core.platform.rollout_settings import RolloutSettings
from core.platform.settings_parsing import (
    parse_bool,
    parse_choice,
    parse_cidrs,
    parse_duration,
    parse_int,
    parse_list,
    parse_name,
    parse_optional_cidrs,
    parse_path,
    parse_phase_limits,
    parse_url,
)
from core.platform.settings_spec import Setting, setting

#: The API key and the development token the simulator accepts when no
#: `HCLOUD_TOKEN` is set. Not a secret: it only ever opens the local simulator.
SIMULATOR_DEV_TOKEN = "rachel-cloud-simulator-dev-token"  # noqa: S105 - documented dev token
HETZNER_ENDPOINT = "https://api.hetzner.cloud/v1"


@dataclass(frozen=True)
class Settings(PlacementSettings, HealthSettings, RolloutSettings, ImageSettings, PoolSettings):
    """The parsed, validated settings every control-plane process shares.

    Build with `Settings.load()` (the environment over `.env`; tests pass an
    explicit `environ`), which also refuses production without its secrets.
    """

    # Where things live.
    data_dir: Path = setting(
        "RACHEL_DATA_DIR",
        "./.rachel-cloud",
        "Directory for the embedded defaults: SQLite database, embedded Redis, "
        "development keys, logs.",
        parse_path,
    )
    database_url: str | None = setting(
        "DATABASE_URL",
        None,
        "Database URL: `postgresql://user:pass@host/db` or `sqlite:///path`. "
        "Default: SQLite in the data directory.",
        parse_url("sqlite", "postgresql", "postgres"),
    )
    redis_url: str | None = setting(
        "REDIS_URL",
        None,
        "Redis URL (`redis://`, `rediss://` or `unix://`). Default: an embedded "
        "redis-server in the data directory, shared by every local process.",
        parse_url("redis", "rediss", "unix"),
    )

    # The cloud.
    hcloud_token: str | None = setting(
        "HCLOUD_TOKEN",
        None,
        "Hetzner Cloud API token. Unset: the control plane talks to the simulator.",
        secret=True,
    )
    hcloud_endpoint: str | None = setting(
        "HCLOUD_ENDPOINT",
        None,
        "Hetzner Cloud API base URL. Default: the real API when HCLOUD_TOKEN is "
        "set, else the simulator at http://127.0.0.1:4010/v1.",
        parse_url("http", "https"),
    )

    # Secrets and auth.
    master_keys: tuple[str, ...] | None = setting(
        "RACHEL_MASTER_KEYS",
        None,
        "Key ring for secrets at rest: comma-separated `KEY_ID:BASE64KEY`, the last "
        "one encrypts, all decrypt (`rachel-cloud keys generate`). Default: a "
        "development key ring in the data directory; required with HCLOUD_TOKEN.",
        parse_list,
        secret=True,
    )
    webhook_secrets: tuple[str, ...] | None = setting(
        "RACHEL_WEBHOOK_SECRETS",
        None,
        "Standard Webhooks signing secrets (`whsec_...`), comma-separated; any "
        "one verifies, for rotation. Default: a development secret in the data "
        "directory; required with HCLOUD_TOKEN.",
        parse_list,
        secret=True,
    )
    api_keys: tuple[str, ...] | None = setting(
        "RACHEL_API_KEYS",
        None,
        "API keys for the status API, comma-separated. Default: a development "
        "key in the data directory; required with HCLOUD_TOKEN.",
        parse_list,
        secret=True,
    )
    public_url: str = setting(
        "RACHEL_PUBLIC_URL",
        "http://127.0.0.1:8000",
        "Base URL the VPSs call back to (cloud-init callback). Must be HTTPS in production.",
        parse_url("http", "https"),
    )

    # Processes.
    web_host: str = setting(
        "RACHEL_WEB_HOST",
        "127.0.0.1",
        "Address `rachel-cloud web` binds.",
    )
    web_port: int = setting(
        "RACHEL_WEB_PORT",
        "8000",
        "Port `rachel-cloud web` listens on.",
        parse_int(1, 65535),
    )
    access_log: bool = setting(
        "RACHEL_ACCESS_LOG",
        "false",
        "Whether `rachel-cloud web` logs a line per request (uvicorn's access log). Off: "
        "at webhook rates it costs more than the request; errors and refusals are logged "
        "either way, and the proxy in front usually keeps an access log.",
        parse_bool,
    )
    trusted_proxies: tuple[str, ...] = setting(
        "RACHEL_TRUSTED_PROXIES",
        "",
        "CIDR ranges of reverse proxies whose `X-Forwarded-For` the web app believes "
        "(cloud-init callbacks are bound to the server's address). Empty: none, the "
        "connection's address is the client's.",
        parse_optional_cidrs,
    )
    max_body_bytes: int = setting(
        "RACHEL_MAX_BODY_BYTES",
        "65536",
        "Largest request body the web app reads; larger requests get 413.",
        parse_int(1024, 16 * 1024 * 1024),
    )
    sse_max_streams: int = setting(
        "RACHEL_SSE_MAX_STREAMS",
        "1000",
        "Most concurrent `GET /api/servers/{id}/events` streams one web process serves; "
        "more get 503 with `Retry-After`. Each costs a socket: keep it under the process's "
        "open-file limit (`ulimit -n`).",
        parse_int(1, 100_000),
    )
    log_format: str = setting(
        "RACHEL_LOG_FORMAT",
        "text",
        "`text` (human-readable) or `json` (one JSON object per line).",
        parse_choice("text", "json"),
    )
    log_level: str = setting(
        "RACHEL_LOG_LEVEL",
        "info",
        "debug, info, warning or error.",
        parse_choice("debug", "info", "warning", "error"),
    )

    # Provisioning.
    # RACHEL_LOCATION and RACHEL_SERVER_TYPE: PlacementSettings.
    image: str = setting(
        "RACHEL_IMAGE",
        "debian-12",
        "Image new servers are created from.",
    )
    sla_seconds: float = setting(
        "RACHEL_SLA",
        "120s",
        "Provisioning time target from deploy to ready.",
        parse_duration,
    )
    grace_period_seconds: float = setting(
        "RACHEL_GRACE_PERIOD",
        "3d",
        "How long a lapsed subscription keeps its server before deprovisioning.",
        parse_duration,
    )
    name_prefix: str = setting(
        "RACHEL_NAME_PREFIX",
        "rachel",
        "Prefix of server names (`<prefix>-<server id>`); distinct per environment "
        "sharing one Hetzner project.",
        parse_name,
    )
    firewall_name: str = setting(
        "RACHEL_FIREWALL_NAME",
        "rachel-cloud-ssh",
        "Name of the shared firewall every server is created behind (SSH only).",
    )
    ssh_source_ranges: tuple[str, ...] = setting(
        "RACHEL_SSH_SOURCE_RANGES",
        "0.0.0.0/0,::/0",
        "CIDR ranges the firewall admits SSH from (the workers' addresses, ideally).",
        parse_cidrs,
    )
    boot_timeout_seconds: float = setting(
        "RACHEL_BOOT_TIMEOUT",
        "10m",
        "How long a new server has to boot and call back before it is failed and cleaned up.",
        parse_duration,
    )
    inject_timeout_seconds: float = setting(
        "RACHEL_INJECT_TIMEOUT",
        "60s",
        "Time limit of one secret-injection attempt (SSH connect, write, restart).",
        parse_duration,
    )
    service_settle_seconds: float = setting(
        "RACHEL_SERVICE_SETTLE",
        "15s",
        "The longest the server waits after its secrets are injected for Rachel8 to log that "
        "it serves its bot (ready at once then, if never restarted automatically); a release "
        "that never logs it is ready once it stayed up this long. 0 checks only that it "
        "started.",
        parse_duration,
    )
    phase_retries: int = setting(
        "RACHEL_PHASE_RETRIES",
        "6",
        "Retries of a phase after transient errors (429, 5xx, network) before the "
        "server is failed.",
        parse_int(0, 100),
    )
    retry_base_seconds: float = setting(
        "RACHEL_RETRY_BASE",
        "2s",
        "First retry delay; doubles per retry with full jitter, capped at 5 minutes.",
        parse_duration,
    )
    create_concurrency: int = setting(
        "RACHEL_CREATE_CONCURRENCY",
        "20",
        "Most server creations in flight at once per Hetzner project (RQ RateLimit).",
        parse_int(1, 10_000),
    )
    rate_limit_reserve: int = setting(
        "RACHEL_RATE_LIMIT_RESERVE",
        "50",
        "API requests kept in reserve: below this many remaining, new creates wait "
        "for the bucket to refill so deprovisions and cleanups still get through.",
        parse_int(0, 3600),
    )
    rachel8_repo_url: str = setting(
        "RACHEL8_REPO_URL",
        "https://github.com/polly3223/Rachel8.git",
        "Git repository every VPS clones Rachel8 from (`https://`, `ssh://` or `git://` URL, "
        "or `user@host:path`).",
        parse_repo_url,
    )
    rachel8_commit: str = setting(
        "RACHEL8_COMMIT",
        "63f162e9302a66344772ab23653789f701c7bcf9",
        "The Rachel8 commit the fleet's first release is seeded from: a full 40-hex-digit "
        "commit id (a branch or tag is refused: it moves). New servers check out the fleet's "
        "current release (`rachel-cloud release list`), which only this seeds while there is "
        "none; after that, rollouts change it.",
        parse_commit,
    )
    rachel8_bun_version: str = setting(
        "RACHEL8_BUN_VERSION",
        "1.4.5",
        "Bun version (x.y.z) installed on new servers, with Bun's official installer.",
        parse_version,
    )
    rachel8_claude_code_version: str = setting(
        "RACHEL8_CLAUDE_CODE_VERSION",
        "2.1.332",
        "Claude Code CLI version (x.y.z, npm `@anthropic-ai/claude-code`) installed on new "
        "servers; Rachel8 drives Claude through it.",
        parse_version,
    )
    rachel8_user: str = setting(
        "RACHEL8_USER",
        "rachel",
        "Linux user Rachel8 runs as on each VPS (no sudo, no password; never root or another "
        "account the image has).",
        parse_linux_user,
    )
    worker_class: str = setting(
        "RACHEL_WORKER_CLASS",
        "simple",
        "RQ worker kind: `simple` (jobs run in the worker process: 2.5x the throughput, "
        "BENCHMARKS.md) or `fork` (a work horse forked per job: a job that crashes the "
        "interpreter or leaks memory cannot take the worker with it).",
        parse_choice("fork", "simple"),
    )
    callback_dispatch: str = setting(
        "RACHEL_CALLBACK_DISPATCH",
        "enqueue",
        "How an accepted cloud-init callback starts the secret injection: `enqueue` (the "
        "callback queues it at once) or `poll` (the design this replaced, kept as the "
        "benchmarks' baseline: a cron task looks for called-back servers every "
        "RACHEL_CALLBACK_POLL_INTERVAL).",
        parse_choice("enqueue", "poll"),
    )
    callback_poll_interval_seconds: float = setting(
        "RACHEL_CALLBACK_POLL_INTERVAL",
        "5s",
        "With RACHEL_CALLBACK_DISPATCH=poll: how often the database is polled for servers "
        "whose callback came and whose injection is not queued yet.",
        parse_duration,
    )

    # Scheduler (`rachel-cloud cron`).
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

    # Where the local simulator is (development and tests only). `rachel-cloud
    # sim` reads these too (`sim.settings`): declared here because the control
    # plane must find the simulator without importing it.
    sim_host: str = setting(
        "RACHEL_SIM_HOST",
        "127.0.0.1",
        "Address of the simulator: `rachel-cloud sim` binds it, and the control plane "
        "calls it there when HCLOUD_TOKEN is unset.",
    )
    sim_port: int = setting(
        "RACHEL_SIM_PORT",
        "4010",
        "Port of the simulator: `rachel-cloud sim` listens on it, and the control plane "
        "calls it there when HCLOUD_TOKEN is unset.",
        parse_int(0, 65535),
    )
    sim_ssh_port: int = setting(
        "RACHEL_SIM_SSH_PORT",
        "2222",
        "SSH port of every simulated VPS (each VPS has its own loopback address); the "
        "secret injection connects to it unless the endpoint is the real Hetzner.",
        parse_int(0, 65535),
    )

    def check(self) -> None:
        """Production (a token, a non-local endpoint) requires real secrets and HTTPS.

        Raises:
            SettingsError: a production requirement is missing.
        """
        if not self.is_production:
            return
        # Against the real cloud, development secrets kept in a local directory
        # would be both a leak and a single point of loss.
        required = ("master_keys", "webhook_secrets", "api_keys")
        for spec in self.specs():
            if spec.attr in required and not getattr(self, spec.attr):
                raise SettingsError(
                    spec.env, "required in production (HCLOUD_TOKEN set, real Hetzner endpoint)"
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
        return self.phase_limits.get(phase)

    @property
    def notifications_enabled(self) -> bool:
        """Whether owner notifications go out.

        `auto` is on against real Hetzner; with the simulator it is on only when
        RACHEL_TELEGRAM_API_URL was set (as RACHEL_TELEGRAM_CHECK's `auto`), so
        that tests and development never message real Telegram users unasked.
        """
        if self.notifications == "auto":
            return self.is_production or "RACHEL_TELEGRAM_API_URL" in self.source
        return self.notifications == "telegram"

    @property
    def telegram_check_enabled(self) -> bool:
        """Whether deploys' bot tokens are checked with Telegram's `getMe`.

        `auto` is on against real Hetzner; with the simulator it is on only when
        RACHEL_TELEGRAM_API_URL was set (the simulator's Telegram, say), so that
        tests and development never call the real Telegram unasked.
        """
        if self.telegram_check == "auto":
            return self.is_production or "RACHEL_TELEGRAM_API_URL" in self.source
        return self.telegram_check == "on"

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


#: Every setting of the control plane, in declaration order.
SETTINGS: tuple[Setting, ...] = Settings.specs()


def settings_table_markdown() -> str:
    """The control plane's settings as a Markdown table (README, `settings --doc`)."""
    return Settings.table_markdown()
