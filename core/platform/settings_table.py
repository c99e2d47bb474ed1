"""Every setting: its variable, default, documentation and parser.

`SETTINGS` is the one place that documents every setting; the README's
settings table and `rachel-cloud settings --doc` are generated from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.platform.settings_parsing import (
    parse_bool,
    parse_choice,
    parse_cidrs,
    parse_duration,
    parse_float,
    parse_int,
    parse_list,
    parse_name,
    parse_optional_cidrs,
    parse_phase_limits,
    parse_text,
    parse_url,
)


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
    parse: Callable[[str], Any] = parse_text
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
        parse_url("sqlite", "postgresql", "postgres"),
    ),
    Setting(
        "REDIS_URL",
        "redis_url",
        None,
        "Redis URL (`redis://`, `rediss://` or `unix://`). Default: an embedded "
        "redis-server in the data directory, shared by every local process.",
        parse_url("redis", "rediss", "unix"),
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
        parse_url("http", "https"),
    ),
    # Secrets and auth.
    Setting(
        "RACHEL_MASTER_KEYS",
        "master_keys",
        None,
        "Key ring for secrets at rest: comma-separated `KEY_ID:BASE64KEY`, the last "
        "one encrypts, all decrypt (`rachel-cloud keys generate`). Default: a "
        "development key ring in the data directory; required with HCLOUD_TOKEN.",
        parse_list,
        secret=True,
    ),
    Setting(
        "RACHEL_WEBHOOK_SECRETS",
        "webhook_secrets",
        None,
        "Standard Webhooks signing secrets (`whsec_...`), comma-separated; any "
        "one verifies, for rotation. Default: a development secret in the data "
        "directory; required with HCLOUD_TOKEN.",
        parse_list,
        secret=True,
    ),
    Setting(
        "RACHEL_API_KEYS",
        "api_keys",
        None,
        "API keys for the status API, comma-separated. Default: a development "
        "key in the data directory; required with HCLOUD_TOKEN.",
        parse_list,
        secret=True,
    ),
    Setting(
        "RACHEL_PUBLIC_URL",
        "public_url",
        "http://127.0.0.1:8000",
        "Base URL the VPSs call back to (cloud-init callback). Must be HTTPS in production.",
        parse_url("http", "https"),
    ),
    # Processes.
    Setting("RACHEL_WEB_HOST", "web_host", "127.0.0.1", "Address `rachel-cloud web` binds."),
    Setting(
        "RACHEL_WEB_PORT",
        "web_port",
        "8000",
        "Port `rachel-cloud web` listens on.",
        parse_int(1, 65535),
    ),
    Setting(
        "RACHEL_ACCESS_LOG",
        "access_log",
        "false",
        "Whether `rachel-cloud web` logs a line per request (uvicorn's access log). Off: "
        "at webhook rates it costs more than the request; errors and refusals are logged "
        "either way, and the proxy in front usually keeps an access log.",
        parse_bool,
    ),
    Setting(
        "RACHEL_TRUSTED_PROXIES",
        "trusted_proxies",
        "",
        "CIDR ranges of reverse proxies whose `X-Forwarded-For` the web app believes "
        "(cloud-init callbacks are bound to the server's address). Empty: none, the "
        "connection's address is the client's.",
        parse_optional_cidrs,
    ),
    Setting(
        "RACHEL_MAX_BODY_BYTES",
        "max_body_bytes",
        "65536",
        "Largest request body the web app reads; larger requests get 413.",
        parse_int(1024, 16 * 1024 * 1024),
    ),
    Setting(
        "RACHEL_LOG_FORMAT",
        "log_format",
        "text",
        "`text` (human-readable) or `json` (one JSON object per line).",
        parse_choice("text", "json"),
    ),
    Setting(
        "RACHEL_LOG_LEVEL",
        "log_level",
        "info",
        "debug, info, warning or error.",
        parse_choice("debug", "info", "warning", "error"),
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
        parse_name,
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
        parse_cidrs,
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
        parse_int(0, 100),
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
        parse_int(1, 10_000),
    ),
    Setting(
        "RACHEL_RATE_LIMIT_RESERVE",
        "rate_limit_reserve",
        "50",
        "API requests kept in reserve: below this many remaining, new creates wait "
        "for the bucket to refill so deprovisions and cleanups still get through.",
        parse_int(0, 3600),
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
        parse_choice("fork", "simple"),
    ),
    Setting(
        "RACHEL_CALLBACK_DISPATCH",
        "callback_dispatch",
        "enqueue",
        "How an accepted cloud-init callback starts the secret injection: `enqueue` (the "
        "callback queues it at once) or `poll` (the design this replaced, kept as the "
        "benchmarks' baseline: a cron task looks for called-back servers every "
        "RACHEL_CALLBACK_POLL_INTERVAL).",
        parse_choice("enqueue", "poll"),
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
        parse_choice("auto", "telegram", "off"),
    ),
    Setting(
        "RACHEL_TELEGRAM_API_URL",
        "telegram_api_url",
        "https://api.telegram.org",
        "Base URL of the Telegram Bot API the notifications are sent through.",
        parse_url("http", "https"),
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
        parse_bool,
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
        parse_phase_limits,
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
        parse_int(0, 65535),
    ),
    Setting(
        "RACHEL_SIM_SSH_PORT",
        "sim_ssh_port",
        "2222",
        "SSH port of every simulated VPS (each VPS has its own loopback address).",
        parse_int(0, 65535),
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
        parse_int(1, 10_000_000),
    ),
    Setting(
        "RACHEL_SIM_RATE_REFILL",
        "sim_rate_refill",
        "1",
        "Simulated API rate limit: requests refilled per second.",
        parse_float(0.0, 1_000_000.0),
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
