"""Request and response bodies (msgspec Structs); the OpenAPI schema is generated from them.

Unknown fields rule: request bodies are strict. A field we do not know is
rejected with 400 `validation_error` (`forbid_unknown_fields`), so a typo in
an integration fails loudly instead of being silently dropped. Responses may
gain fields over time; clients should ignore the ones they do not know.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, Struct

CustomerId = Annotated[
    str,
    Meta(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
        max_length=128,
        description="The dashboard's id of the customer.",
        examples=["cus_12345"],
    ),
]
Email = Annotated[
    str,
    Meta(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$", max_length=320, examples=["ada@example.com"]),
]
ProviderName = Annotated[str, Meta(pattern=r"^[a-z0-9][a-z0-9-]{1,31}$", max_length=32)]
SubscriptionStatus = Literal["active", "past_due", "canceled", "unpaid"]


OAuthToken = Annotated[
    str,
    Meta(min_length=1, max_length=4096, description="An OAuth token (stored encrypted)."),
]


class ClaudeOAuth(Struct, forbid_unknown_fields=True, kw_only=True):
    """The Claude Code CLI's OAuth credentials, field by field (`claudeAiOauth`)."""

    access_token: Annotated[OAuthToken, Meta(examples=["sk-ant-oat01-..."])]
    refresh_token: Annotated[OAuthToken, Meta(examples=["sk-ant-ort01-..."])]
    expires_at: Annotated[
        int,
        Meta(
            description="When the access token expires, ms since the epoch; must be in the "
            "future (the VPS refreshes it from then on).",
            examples=[1748658860401],
        ),
    ]
    scopes: (
        Annotated[
            list[Annotated[str, Meta(min_length=1, max_length=64)]],
            Meta(
                max_length=32, description="Granted scopes; default user:inference, user:profile."
            ),
        ]
        | None
    ) = None


class SpeechToText(Struct, forbid_unknown_fields=True, kw_only=True):
    """Speech-to-text for the customer's voice messages."""

    provider: Literal["groq", "openai"]
    api_key: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=512,
            description="The provider's API key, 8 to 512 letters, digits or `_-.:/+=@` "
            "(stored encrypted).",
        ),
    ]


class DeployRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /webhooks/deploy`: give this customer their Rachel8 server.

    Checked with Rachel8's own rules before anything is stored (422
    `invalid_rachel8_config`, `expired`, `credentials_form` or
    `telegram_token_rejected`, with `field` naming the value): a deploy
    Rachel8 would refuse at start is refused here. The Claude credentials come
    in exactly one of two forms, `claude_oauth` or `claude_credentials`.
    """

    customer_id: CustomerId
    email: Email
    telegram_bot_token: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=256,
            description="The customer's Telegram bot token, as Rachel8 requires it: "
            "`^\\d{8,}:[A-Za-z0-9_-]{35,}$` (stored encrypted). Checked with Telegram's "
            "getMe when RACHEL_TELEGRAM_CHECK is on.",
            examples=["7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"],
        ),
    ]
    owner_telegram_user_id: Annotated[
        int,
        Meta(
            description="The owner's Telegram user id: the only user the bot answers. "
            "A positive integer.",
            examples=[123456789],
        ),
    ]
    claude_oauth: Annotated[
        ClaudeOAuth | None,
        Meta(
            description="The Claude credentials as the OAuth triple (or give claude_credentials)."
        ),
    ] = None
    claude_credentials: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=16384,
                description="The Claude credentials as the text of `~/.claude/.credentials.json` "
                '(`{"claudeAiOauth": {"accessToken", "refreshToken", "expiresAt", "scopes"}}`), '
                "or give claude_oauth; stored encrypted.",
            ),
        ]
        | None
    ) = None
    speech_to_text: Annotated[
        SpeechToText | None, Meta(description="Optional speech-to-text for voice messages.")
    ] = None
    location: Annotated[
        ProviderName | None, Meta(description="Hetzner location; default RACHEL_LOCATION.")
    ] = None
    server_type: Annotated[
        ProviderName | None, Meta(description="Hetzner server type; default RACHEL_SERVER_TYPE.")
    ] = None


class DeployAccepted(Struct, kw_only=True):
    """The deploy is stored and will be carried out; follow `status_url` for its outcome."""

    webhook_id: str
    customer_id: str
    status: Literal["accepted"]
    status_url: str


class DeployStatus(Struct, kw_only=True):
    """What became of a deploy webhook.

    `state`: `accepted` (stored, not carried out yet), `done` (the customer has
    the server `server_id`; `created` says whether this deploy created it),
    `refused` (the subscription was no longer active when it was carried out)
    or `failed` (it could not be carried out: `code` and `message` say why;
    deliver it again under a new webhook-id).
    """

    webhook_id: str
    customer_id: str | None
    state: Literal["accepted", "done", "refused", "failed"]
    received_at: datetime
    processed_at: datetime | None
    server_id: int | None
    created: bool | None
    server_url: str | None
    code: str | None
    message: str | None


class SubscriptionEvent(Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /webhooks/subscription`: the customer's subscription changed."""

    customer_id: CustomerId
    status: SubscriptionStatus
    occurred_at: Annotated[
        datetime,
        Meta(
            description="When the change happened on the billing side (RFC 3339; no offset "
            "means UTC). An event older than the last one applied is ignored."
        ),
    ]
    current_period_end: datetime | None = None
    email: Email | None = None


class SubscriptionRecorded(Struct, kw_only=True):
    """The subscription after the event; `applied` is false for an out-of-order event."""

    customer_id: str
    status: str
    applied: bool
    lapsed_at: datetime | None
    grace_until: datetime | None
    current_period_end: datetime | None


InstallStep = Literal[
    "packages", "user", "bun", "claude_code", "clone", "dependencies", "shared_folder", "unit"
]  # fmt: skip
Commit = Annotated[str, Meta(pattern=r"^[0-9a-f]{40}$", description="A full git commit id.")]
Version = Annotated[str, Meta(max_length=64)]


class CloudInitState(Struct, forbid_unknown_fields=True, kw_only=True):
    """`cloud-init status --format json` on the VPS, bounded."""

    status: Annotated[str, Meta(max_length=64)]
    errors: Annotated[list[Annotated[str, Meta(max_length=500)]], Meta(max_length=5)] = []


class InstalledVersions(Struct, forbid_unknown_fields=True, kw_only=True):
    """The versions the install found (None: that step was not reached)."""

    bun: Version | None = None
    claude_code: Version | None = None


class InstallReport(Struct, forbid_unknown_fields=True, kw_only=True):
    """The outcome of the VPS's install steps (`core.cloud.vps_contract`)."""

    ok: bool
    failed_step: Annotated[
        InstallStep | None,
        Meta(description="The step that failed (None when ok, or when none ran)."),
    ] = None
    exit_status: Annotated[int, Meta(ge=-255, le=255)] | None = None
    log_tail: Annotated[
        str,
        Meta(max_length=2000, description="The end of the failed step's output, token removed."),
    ] = ""
    cloud_init: CloudInitState
    commit: Annotated[
        Commit | None, Meta(description="What `git rev-parse HEAD` says in the clone.")
    ] = None
    versions: InstalledVersions = msgspec.field(default_factory=InstalledVersions)

    def __post_init__(self) -> None:
        # msgspec turns this into a 400 validation error, like any malformed field.
        if self.ok and self.failed_step is not None:
            raise ValueError("install.failed_step must be null when install.ok is true")


class CloudInitCallback(Struct, forbid_unknown_fields=True, kw_only=True):
    """`POST /callbacks/cloud-init/{server_id}`: cloud-init finished on the VPS."""

    host_key: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=512,
            description="The VPS's SSH host public key, one OpenSSH line (ssh-ed25519 ...).",
        ),
    ]
    install: Annotated[
        InstallReport,
        Meta(description="The install's outcome: what the install script left on the VPS."),
    ]


class CallbackAccepted(Struct, kw_only=True, omit_defaults=True):
    """The callback was recorded: `status` is `injecting_secrets` (secret injection is
    queued) or `failed` (the install failed or checked out another commit: `reason`
    says why, and the VPS is being deleted; the VPS need not call again)."""

    server_id: int
    status: str
    reason: str | None = None


class ImageCallbackAccepted(Struct, kw_only=True, omit_defaults=True):
    """The builder's callback was recorded: `reason` says why its install failed, if it
    did (the build then fails and deletes the builder); the builder need not call again."""

    image_id: int
    state: str
    reason: str | None = None


class PoolCallbackAccepted(Struct, kw_only=True, omit_defaults=True):
    """A warm pool server's callback was recorded: `warm`, or `recycling` with the reason
    its install failed (it is then deleted); the server need not call again."""

    pool_id: int
    state: str
    reason: str | None = None


class HeartbeatAccepted(Struct, kw_only=True):
    """The heartbeat is recorded."""

    accepted: Literal[True]


class PhaseTiming(Struct, kw_only=True):
    """When a phase started and, once the next began, how long it took."""

    phase: str
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None


class Drift(Struct, kw_only=True):
    """The reconciler's current finding about a server: it disagrees with Hetzner or its jobs."""

    kind: str  # lost (its VPS is gone), stuck (past its phase limit), orphan (a stray VPS)
    reason: str


HealthStateName = Literal["healthy", "degraded", "unhealthy", "unknown"]


class HealthInfo(Struct, kw_only=True):
    """The assistant's health, beside the provisioning status (`core.domain.health`).

    `healthy`: Rachel8 runs and Telegram answers; `degraded`: it runs but needs
    attention; `unhealthy`: it does not answer its owner (`reason` says why);
    `unknown`: nothing heard yet.
    """

    state: HealthStateName
    reason: str | None
    since: datetime | None


class ServerStatus(Struct, kw_only=True):
    """A server as the status API shows it (never a secret).

    `uptime_30d_percent`: the share of the last 30 days the assistant was healthy
    or degraded, of the time its health was known (unknown time is left out;
    null when none was known yet). `last_heartbeat_at`: when its VPS's latest
    heartbeat arrived (null: none since its last provisioning).
    """

    id: int
    customer_id: str
    status: str
    name: str | None
    location: str
    server_type: str
    ipv4: str | None
    ipv6: str | None
    attempt: int
    created_at: datetime
    updated_at: datetime
    ready_at: datetime | None
    provisioning_seconds: float | None
    sla_seconds: float
    within_sla: bool | None
    phases: list[PhaseTiming]
    failed_phase: str | None
    last_error: str | None
    status_url: str
    events_url: str
    health: HealthInfo
    uptime_30d_percent: float | None
    last_heartbeat_at: datetime | None
    drift: Drift | None = None


class ServiceStatus(Struct, kw_only=True):
    """The Rachel8 unit as systemd reports it (`systemctl show`)."""

    active: str
    sub: str
    restarts: int
    result: str
    exit_status: int
    running: bool


class Restarted(Struct, kw_only=True):
    """Rachel8 was restarted: the unit's state right after (its next heartbeats tell
    whether it stays up)."""

    server_id: int
    service: ServiceStatus


class LogLines(Struct, kw_only=True):
    """The last lines of Rachel8's journal, oldest first, secrets masked."""

    server_id: int
    lines: list[str]


class Health(Struct, kw_only=True):
    """Liveness: the process answers."""

    status: Literal["ok"]


class Readiness(Struct, kw_only=True):
    """Readiness: the database and Redis answer."""

    status: Literal["ready"]
    checks: dict[str, str]


class ErrorInfo(Struct, kw_only=True, omit_defaults=True):
    """What went wrong: a stable machine-readable code and a message for people."""

    code: str
    message: str
    details: list[str] | None = None
    #: The request field at fault, when one is (`claude_oauth.expires_at`, say).
    field: str | None = None


class ErrorBody(Struct, kw_only=True):
    """Every error response."""

    error: ErrorInfo


def encode(value: Struct) -> str:
    """A struct as JSON text (for stored idempotent answers)."""
    return msgspec.json.encode(value).decode("utf-8")
