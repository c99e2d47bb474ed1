"""The data model (peewee): customers, subscriptions, servers, events, deliveries,
Rachel8 releases and their rollouts, snapshot images.

Secret columns are `EncryptedField`s: they hold `Ciphertext` values only and
refuse a plain string, so plaintext cannot be stored by accident. Seal and
open them with `core.store.vault` (which binds each ciphertext to its row).
"""

from __future__ import annotations

from typing import Any

import peewee

from core.platform.clock import utcnow
from core.security.crypto import Ciphertext
from core.store.db import database


class EncryptedField(peewee.TextField):
    """A column of `Ciphertext` values (AES-256-GCM, bound to table, row and field)."""

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, Ciphertext):
            return value.token
        raise TypeError(
            f"{self.model.__name__}.{self.name} is encrypted: assign a Ciphertext "
            "(core.secrets.seal), never a plain value"
        )

    def python_value(self, value: Any) -> Ciphertext | None:
        if value is None:
            return None
        return Ciphertext(str(value))


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False

    def row_id(self) -> Any:
        """The primary key's value (None before the first save)."""
        return getattr(self, "_pk", None)


class Customer(BaseModel):
    """A paying customer, identified by the dashboard's external id."""

    id = peewee.AutoField()

    external_id = peewee.CharField(max_length=128, unique=True)
    email = peewee.CharField(max_length=320)
    telegram_bot_token = EncryptedField(null=True)
    # The `.credentials.json` document the Claude Code CLI reads (core.cloud.rachel8).
    claude_credentials = EncryptedField(null=True)
    # The only Telegram user the bot answers. Null for customers from before
    # Rachel8 ran as published: their secrets cannot be injected until it is given.
    owner_telegram_user_id = peewee.BigIntegerField(null=True)
    stt_provider = peewee.CharField(max_length=16, null=True)  # groq | openai
    stt_api_key = EncryptedField(null=True)
    # Where the grace-period warning is sent through the customer's own bot (optional).
    telegram_chat_id = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)


class Subscription(BaseModel):
    """The customer's subscription as the billing webhooks last reported it."""

    id = peewee.AutoField()

    customer = peewee.ForeignKeyField(
        Customer, unique=True, backref="subscriptions", on_delete="CASCADE"
    )
    status = peewee.CharField(max_length=16)  # active, past_due, canceled, unpaid
    current_period_end = peewee.DateTimeField(null=True)
    lapsed_at = peewee.DateTimeField(null=True)
    grace_until = peewee.DateTimeField(null=True)
    warned_at = peewee.DateTimeField(null=True)
    # When the billing side says the change that set the current state happened;
    # webhooks arrive out of order, and an older event than this is ignored.
    event_at = peewee.DateTimeField(null=True)
    updated_at = peewee.DateTimeField(default=utcnow)


class Server(BaseModel):
    """A customer's VPS and where it is in its lifecycle (`core.domain.lifecycle`)."""

    id = peewee.AutoField()

    customer = peewee.ForeignKeyField(Customer, backref="servers", on_delete="RESTRICT")
    customer_id: int  # peewee's accessor for the foreign key's raw value
    status = peewee.CharField(max_length=24, default="pending", index=True)
    attempt = peewee.IntegerField(default=0)
    provider_id = peewee.BigIntegerField(null=True, index=True)
    name = peewee.CharField(max_length=63, null=True, unique=True)
    ipv4 = peewee.CharField(max_length=45, null=True)
    ipv6 = peewee.CharField(max_length=64, null=True)
    location = peewee.CharField(max_length=32)
    server_type = peewee.CharField(max_length=32)
    image = peewee.CharField(max_length=64)
    ssh_private_key = EncryptedField(null=True)
    ssh_public_key = peewee.TextField(null=True)
    host_key = peewee.TextField(null=True)  # pinned from the cloud-init callback
    callback_token_hash = peewee.CharField(max_length=64, null=True)
    callback_token_expires_at = peewee.DateTimeField(null=True)
    callback_token_used_at = peewee.DateTimeField(null=True)
    last_error = peewee.TextField(null=True)
    failed_phase = peewee.CharField(max_length=24, null=True)
    deadline_at = peewee.DateTimeField(null=True)  # when the current phase times out
    retries = peewee.IntegerField(default=0)  # transient-error retries in the current phase
    # Of those, the waits for Hetzner's rate limit: the project's budget, not this
    # server's trouble, so they do not use up the phase's retries (its time limit bounds them).
    throttled = peewee.IntegerField(default=0)
    # Set, and committed, before the create request goes out: a job that finds it
    # set without a provider_id looks the server up by label before creating again.
    create_requested_at = peewee.DateTimeField(null=True)
    job_id = peewee.CharField(max_length=96, null=True)  # the server's current or next job
    requested_by = peewee.CharField(max_length=64, default="webhook")
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    updated_at = peewee.DateTimeField(default=utcnow)
    status_changed_at = peewee.DateTimeField(default=utcnow)
    creating_at = peewee.DateTimeField(null=True)
    cloud_init_at = peewee.DateTimeField(null=True)
    injecting_secrets_at = peewee.DateTimeField(null=True)
    ready_at = peewee.DateTimeField(null=True)
    failed_at = peewee.DateTimeField(null=True)
    deprovisioning_at = peewee.DateTimeField(null=True)
    deleted_at = peewee.DateTimeField(null=True)
    provisioning_seconds = peewee.FloatField(null=True)  # created -> ready, against the SLA
    # The Rachel8 commit of the server: the one its user data pins (set when it is
    # created), which its callback must report checked out, and then runs (the injection).
    rachel8_commit = peewee.CharField(max_length=40, null=True)
    # The reconciler's current finding about the server (orphan, lost, stuck) and
    # why: rewritten by every reconcile run, cleared by a status change, so a
    # server whose VPS is gone does not pass for a healthy one.
    drift = peewee.CharField(max_length=16, null=True)
    drift_reason = peewee.TextField(null=True)
    # Fleet health (core.domain.health), beside the provisioning status: only
    # the decisions live here; the heartbeats themselves are in Redis
    # (core.domain.heartbeats). The agent's credential is stored hashed, replaced
    # by every injection.
    heartbeat_credential_hash = peewee.CharField(max_length=64, null=True)
    health = peewee.CharField(max_length=16, default="unknown", index=True)
    health_reason = peewee.TextField(null=True)
    health_changed_at = peewee.DateTimeField(null=True)
    # The current incident's repairs: restarts tried in its window, the reboot,
    # and the circuit breaker (no automatic repair until breaker_until).
    repair_window_started_at = peewee.DateTimeField(null=True)
    repair_restarts = peewee.IntegerField(default=0)
    repair_rebooted_at = peewee.DateTimeField(null=True)
    breaker_until = peewee.DateTimeField(null=True)
    # When the owner was last told their assistant is down (None: not told, or
    # told it is back since): at most one "down" message per cooldown.
    owner_notified_down_at = peewee.DateTimeField(null=True)
    # A rollout's update of this server holds it (the RolloutTarget id, as text)
    # so that the pipeline, a deprovision, a re-injection and health repair do not
    # race the update. Taken only by a compare-and-set on a ready, unclaimed server.
    update_claim = peewee.CharField(max_length=32, null=True)
    update_claimed_at = peewee.DateTimeField(null=True)


# At most one live (not deleted) server per customer, enforced by the database
# itself so that two racing deploy webhooks cannot both create one.
Server.add_index(
    Server.index(
        Server.customer,
        unique=True,
        where=(Server.status != "deleted"),
        name="server_one_live_per_customer",
    )
)


class Event(BaseModel):
    """One entry of a server's timeline: the audit trail and the TUI's history."""

    id = peewee.AutoField()

    # None for fleet-level events (a scheduler run's summary).
    server = peewee.ForeignKeyField(
        Server, backref="events", on_delete="CASCADE", index=True, null=True
    )
    at = peewee.DateTimeField(default=utcnow, index=True)
    kind = peewee.CharField(max_length=32)  # transition, retry, error, operator, cron, ...
    message = peewee.TextField()
    actor = peewee.CharField(max_length=96)  # system, webhook, cron, customer, operator:NAME
    from_status = peewee.CharField(max_length=24, null=True)
    to_status = peewee.CharField(max_length=24, null=True)


class WebhookDelivery(BaseModel):
    """A webhook we accepted: its id guards against replays and makes retries idempotent.

    A deploy is also the intake queue's entry (`core.domain.intake`): it is stored
    `accepted` with its request sealed in `payload`, answered, and carried out
    by a job, which records the outcome and erases the payload.
    """

    webhook_id = peewee.CharField(max_length=128, primary_key=True)
    kind = peewee.CharField(max_length=32)
    received_at = peewee.DateTimeField(default=utcnow, index=True)
    body_sha256 = peewee.CharField(max_length=64)
    response_status = peewee.IntegerField()
    response_body = peewee.TextField()
    # The intake of deploys (None for deliveries handled in the request).
    state = peewee.CharField(max_length=16, null=True)  # accepted, done, refused, failed
    customer_external_id = peewee.CharField(max_length=128, null=True)
    payload = EncryptedField(null=True)  # the sealed request, until it is carried out
    server_id = peewee.IntegerField(null=True)
    created_server = peewee.BooleanField(null=True)
    outcome_code = peewee.CharField(max_length=48, null=True)
    outcome = peewee.TextField(null=True)
    processed_at = peewee.DateTimeField(null=True)


# The intake's queue: the deploys not yet carried out, found without a scan.
WebhookDelivery.add_index(
    WebhookDelivery.index(
        WebhookDelivery.received_at,
        where=(WebhookDelivery.state == "accepted"),
        name="webhook_delivery_intake_queue",
    )
)


class Release(BaseModel):
    """A Rachel8 commit the fleet may run, added by an operator (`core.domain.releases`)."""

    id = peewee.AutoField()

    commit = peewee.CharField(max_length=40, unique=True)
    notes = peewee.TextField(default="")
    added_by = peewee.CharField(max_length=96)
    added_at = peewee.DateTimeField(default=utcnow)


class FleetRelease(BaseModel):
    """The fleet's current release (the one row, id 1): what new servers are created with."""

    id = peewee.IntegerField(primary_key=True)

    release = peewee.ForeignKeyField(Release, on_delete="RESTRICT")
    release_id: int
    changed_at = peewee.DateTimeField(default=utcnow)
    changed_by = peewee.CharField(max_length=96)


class Rollout(BaseModel):
    """Moving the fleet to a release in waves (`core.domain.rollouts`, `rollout_store`)."""

    id = peewee.AutoField()

    release = peewee.ForeignKeyField(Release, on_delete="RESTRICT")
    release_id: int
    state = peewee.CharField(max_length=16, default="planned", index=True)
    canary = peewee.IntegerField()
    shares = peewee.TextField()  # JSON list of cumulative shares, ending at 1.0
    max_in_flight = peewee.IntegerField()
    soak_seconds = peewee.FloatField()
    gate_seconds = peewee.FloatField()
    # A wave halts when its failed share is above this (the canary: at any failure).
    halt_share = peewee.FloatField()
    wave = peewee.IntegerField(default=0)  # the current wave; 0 is the canary
    soak_until = peewee.DateTimeField(null=True)
    reason = peewee.TextField(null=True)  # why it halted, was aborted or rolled back
    created_by = peewee.CharField(max_length=96)
    created_at = peewee.DateTimeField(default=utcnow)
    started_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)
    updated_at = peewee.DateTimeField(default=utcnow)


class RolloutTarget(BaseModel):
    """One server of a rollout: its wave, order, and what became of it."""

    id = peewee.AutoField()

    rollout = peewee.ForeignKeyField(Rollout, backref="targets", on_delete="CASCADE")
    rollout_id: int
    server = peewee.ForeignKeyField(Server, on_delete="CASCADE", index=True)
    server_id: int
    wave = peewee.IntegerField()  # -1: not in any wave (skipped when planned)
    position = peewee.IntegerField()  # order within the rollout
    state = peewee.CharField(max_length=16, default="pending")
    from_commit = peewee.CharField(max_length=40, null=True)
    to_commit = peewee.CharField(max_length=40)
    reason = peewee.TextField(null=True)
    started_at = peewee.DateTimeField(null=True)  # its update was (last) queued
    switched_at = peewee.DateTimeField(null=True)  # it runs the target commit since
    rollback_started_at = peewee.DateTimeField(null=True)  # its rollback was (last) queued
    rollback_at = peewee.DateTimeField(null=True)  # it was switched back to from_commit
    finished_at = peewee.DateTimeField(null=True)


RolloutTarget.add_index(
    RolloutTarget.index(RolloutTarget.rollout, RolloutTarget.server, unique=True)
)


class Image(BaseModel):
    """A snapshot image of a server with a Rachel8 release installed (`core.domain.images`).

    A row is made `building` before its builder server exists; the builder's
    callback token is stored hashed, like a server's. New servers start from
    the newest `available` image of the fleet's current release.
    """

    id = peewee.AutoField()

    state = peewee.CharField(max_length=16, default="building", index=True)
    commit = peewee.CharField(max_length=40, index=True)  # the Rachel8 release it holds
    bun_version = peewee.CharField(max_length=64)
    claude_code_version = peewee.CharField(max_length=64)
    provider_image_id = peewee.BigIntegerField(null=True, unique=True)  # the Hetzner snapshot
    image_size = peewee.FloatField(null=True)  # GB billed for its storage
    disk_size = peewee.FloatField(null=True)  # GB of disk a server made from it needs
    # The builder: a server made from the stock image, deleted once snapshotted.
    server_type = peewee.CharField(max_length=32)
    location = peewee.CharField(max_length=32)
    base_image = peewee.CharField(max_length=64)  # the stock image it was built from
    builder_provider_id = peewee.BigIntegerField(null=True)
    builder_ipv4 = peewee.CharField(max_length=45, null=True)
    builder_host_key = peewee.TextField(null=True)  # pinned from the builder's callback
    callback_token_hash = peewee.CharField(max_length=64, null=True)
    callback_token_expires_at = peewee.DateTimeField(null=True)
    called_back_at = peewee.DateTimeField(null=True)
    reason = peewee.TextField(null=True)  # why it failed, or was deleted
    requested_by = peewee.CharField(max_length=96)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    deadline_at = peewee.DateTimeField(null=True)  # the build's time limit
    available_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)  # failed or deleted


class PoolServer(BaseModel):
    """A warm pool server (`core.domain.pool`): a VPS made ahead, with no customer, no secret.

    Created from the current release's image, booted, called back (its host
    key pinned) and then `warm`; a deploy claims one (`claimed`, `server`
    names the Server row that took its VPS over) or the refill recycles it.
    Its SSH key is sealed like a Server's; its callback token stored hashed.
    """

    id = peewee.AutoField()

    state = peewee.CharField(max_length=16, default="creating", index=True)
    location = peewee.CharField(max_length=32)
    server_type = peewee.CharField(max_length=32)
    image = peewee.CharField(max_length=64)  # a snapshot id, or the stock image's name
    commit = peewee.CharField(max_length=40)  # the Rachel8 release it holds
    provider_id = peewee.BigIntegerField(null=True, unique=True)
    name = peewee.CharField(max_length=63, unique=True)
    ipv4 = peewee.CharField(max_length=45, null=True)
    ipv6 = peewee.CharField(max_length=64, null=True)
    ssh_private_key = EncryptedField(null=True)
    ssh_public_key = peewee.TextField(null=True)
    host_key = peewee.TextField(null=True)  # pinned from its callback
    callback_token_hash = peewee.CharField(max_length=64, null=True)
    callback_token_expires_at = peewee.DateTimeField(null=True)
    server_id = peewee.IntegerField(null=True, unique=True)  # the Server that claimed it
    reason = peewee.TextField(null=True)  # why it was recycled
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    deadline_at = peewee.DateTimeField(null=True)  # when creating or booting times out
    warm_at = peewee.DateTimeField(null=True)
    claimed_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)  # deleted


class SchemaVersion(BaseModel):
    """The schema version a database is at (one row), see `core.store.migrations`."""

    id = peewee.AutoField()

    version = peewee.IntegerField()
    applied_at = peewee.DateTimeField(default=utcnow)


#: Every table, in creation order.
MODELS: tuple[type[BaseModel], ...] = (
    Customer,
    Subscription,
    Server,
    Event,
    WebhookDelivery,
    SchemaVersion,
    Release,
    FleetRelease,
    Rollout,
    RolloutTarget,
    Image,
    PoolServer,
)
#: Tables with encrypted columns, and those columns (key rotation walks them).
ENCRYPTED_COLUMNS: dict[type[BaseModel], tuple[str, ...]] = {
    Customer: ("telegram_bot_token", "claude_credentials", "stt_api_key"),
    Server: ("ssh_private_key",),
    PoolServer: ("ssh_private_key",),
    WebhookDelivery: ("payload",),
}
