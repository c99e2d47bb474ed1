"""The provisioning settings: creating a server, installing Rachel8 on it, handing it its secrets.

Declared apart from `core.platform.settings` (which inherits them, as it does
`core.platform.health_settings`) to keep each module readable; documented and
parsed like every other setting. Where a new server goes (`RACHEL_LOCATION`,
`RACHEL_SERVER_TYPE`) is `core.platform.placement_settings`. Last come the
settings of the workers that provision (`RACHEL_WORKER_CLASS`) and of how a
cloud-init callback starts the secret injection, in the order the settings
table has always listed them.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.platform.install_parsing import (
    parse_commit,
    parse_linux_user,
    parse_repo_url,
    parse_version,
)
from core.platform.settings_parsing import (
    parse_choice,
    parse_cidrs,
    parse_duration,
    parse_int,
    parse_name,
)
from core.platform.settings_spec import DeclaredSettings, setting


@dataclass(frozen=True, kw_only=True)
class ProvisioningSettings(DeclaredSettings):
    """How new servers are created, installed and given their secrets (`jobs.creating`)."""

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
        "Prefix of server names (`<prefix>-<server id>`; a server that claimed a warm pool "
        "server keeps its `<prefix>-pool-<pool id>`); distinct per environment sharing one "
        "Hetzner project.",
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
