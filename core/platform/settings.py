"""Settings: 12-factor configuration from the environment and an optional `.env`.

`Settings` declares every setting of the control plane once, as a typed field
whose `setting(...)` carries its variable, default, documentation and parser
(`core.platform.settings_spec`; the parsers are `core.platform.settings_parsing`).
`SETTINGS`, the README's settings table and `rachel-cloud settings --doc` are
generated from it. With nothing set, every process runs on embedded defaults in
the data directory: SQLite, an embedded Redis server and the Hetzner simulator.

`Settings` declares where things live, the cloud, secrets and the processes
itself, and inherits every other group from a module of its own:
`provisioning_settings`, `scheduler_settings`, `simulator_address_settings`,
`placement_settings`, `health_settings`, `rollout_settings`, `image_settings`
and `pool_settings` (all in `core.platform`).

The simulator declares its own settings (`sim.settings`); it shares the few
the control plane needs to reach it (`RACHEL_SIM_HOST`, `RACHEL_SIM_PORT`,
`RACHEL_SIM_SSH_PORT`), which `core.platform.simulator_address_settings` declares.

Every value is parsed once, at load; an invalid one fails fast with a
`SettingsError` that names the setting.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from core.errors import SettingsError
from core.platform.health_settings import HealthSettings
from core.platform.image_settings import ImageSettings
from core.platform.placement_settings import PlacementSettings
from core.platform.pool_settings import PoolSettings
from core.platform.provisioning_settings import ProvisioningSettings
from core.platform.rollout_settings import RolloutSettings
from core.platform.scheduler_settings import SchedulerSettings
from core.platform.settings_parsing import (
    parse_bool,
    parse_choice,
    parse_int,
    parse_list,
    parse_optional_cidrs,
    parse_path,
    parse_url,
)
from core.platform.settings_spec import Setting, setting
from core.platform.simulator_address_settings import SimulatorAddressSettings

#: The API key and the development token the simulator accepts when no
#: `HCLOUD_TOKEN` is set. Not a secret: it only ever opens the local simulator.
SIMULATOR_DEV_TOKEN = "rachel-cloud-simulator-dev-token"  # noqa: S105 - documented dev token
HETZNER_ENDPOINT = "https://api.hetzner.cloud/v1"


@dataclass(frozen=True)
class Settings(
    ProvisioningSettings,
    SchedulerSettings,
    SimulatorAddressSettings,
    PlacementSettings,
    HealthSettings,
    RolloutSettings,
    ImageSettings,
    PoolSettings,
):
    """The parsed, validated settings every control-plane process shares.

    Build with `Settings.load()` (the environment over `.env`; tests pass an
    explicit `environ`), which also refuses production without its secrets.
    Its own fields are where things live, the cloud, secrets and the processes;
    the other groups are inherited, and the settings table lists them after
    these, in the order of the bases.
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
