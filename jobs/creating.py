"""Phase 1, creating: make the VPS on Hetzner, then wait for its callback.

One Hetzner request per provision in the usual case: the firewall and the
fleet key are looked up once and cached, the create request carries them, and
nothing is polled afterwards (the cloud-init callback says the VPS is up). The
boot deadline is a scheduled check, not a sleeping worker.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import redis

from core.cloud.cloudinit import CloudConfigInput, Rachel8Install, callback_url, render
from core.cloud.cloudinit_image import render_from_image
from core.cloud.provider import CreateSpec, HetznerError
from core.domain import image_store, pool_store
from core.domain.callbacks import hash_token, issue_token
from core.domain.image_store import is_snapshot, starting_image
from core.domain.lifecycle import Status, record_event, transition
from core.domain.releases import current_commit
from core.platform.logs import server_logger
from core.security.crypto import generate_ssh_keypair
from core.store import rows
from core.store.db import connection
from core.store.models import Server
from core.store.vault import seal
from jobs.capacity import create_placed
from jobs.context import JobContext, context
from jobs.enqueue import after_callback, create_rate_limit, injection_job_id, request_refill
from jobs.outcomes import Requeue, retry_or_fail
from jobs.queues import FINISH, START, enqueue_step
from jobs.registry import JobFunction

log = logging.getLogger(__name__)

FLEET_KEY_NAME_SUFFIX = "fleet"


def _begin(ctx: JobContext, server_id: int) -> Server | None:
    server = rows.get(Server, server_id)
    if server is None:
        log.warning("server %s: creating skipped, no such server", server_id)
        return None
    if server.status == Status.PENDING:
        moved = transition(
            server_id,
            Status.PENDING,
            Status.CREATING,
            message="creating the VPS on Hetzner",
            changes={"attempt": server.attempt + 1, "retries": 0, "create_requested_at": None},
            clock=ctx.clock,
            publish=ctx.publish,
            row=server,  # now as written: no second read
        )
        return server if moved else None
    if server.status != Status.CREATING:
        log.info("server %s: creating skipped, the server is %s", server_id, server.status)
        return None
    return server


def _user_data(ctx: JobContext, server: Server) -> str:
    """The server's user data; its key pair and armed token are set on `server`, unsaved."""
    if server.ssh_private_key is None:
        pair = generate_ssh_keypair(comment=f"rachel-cloud-{server.id}")
        seal(ctx.keyring, server, "ssh_private_key", pair.private_openssh)
        server.ssh_public_key = pair.public_openssh
    token = _callback_token(ctx, server)
    issue_token(server, ctx.settings.boot_timeout_seconds, ctx.clock, token=token)
    install = Rachel8Install.from_settings(ctx.settings)
    # The commit is fixed per attempt, like the token: a retried create that
    # adopts the VPS of an earlier run expects the commit that VPS was given,
    # and the callback checks the VPS checked out exactly this one. A new
    # attempt gets the fleet's current release (RACHEL8_COMMIT only seeds it).
    if server.create_requested_at is None or not server.rachel8_commit:
        server.rachel8_commit = current_commit(ctx.settings.rachel8_commit, ctx.clock)
    if server.create_requested_at is None:
        # The release's image when there is one (only the per-server part of
        # cloud-init runs), else the stock image and the whole install.
        settings = ctx.settings
        server.image = starting_image(
            settings.image, server.rachel8_commit, settings.images_enabled
        )
    rendering = render_from_image if is_snapshot(server.image) else render
    return rendering(
        CloudConfigInput(
            hostname=server.name or f"{ctx.settings.name_prefix}-{server.id}",
            authorized_key=server.ssh_public_key or "",
            callback_url=callback_url(ctx.settings.public_url, server.id),
            callback_token=token,
            install=replace(install, commit=server.rachel8_commit),
            heartbeat_interval=ctx.settings.heartbeat_interval_seconds,
        )
    )


_SAVED_BEFORE_CREATE = [
    Server.ssh_private_key,
    Server.ssh_public_key,
    Server.callback_token_hash,
    Server.callback_token_expires_at,
    Server.callback_token_used_at,
    Server.create_requested_at,
    Server.rachel8_commit,
    Server.image,
]


def _callback_token(ctx: JobContext, server: Server) -> str:
    """The callback token of this attempt: the one already armed, if the ring still derives it.

    A retried create may adopt the VPS an earlier run created, whose user data
    carries the token derived then. If the master keys rotated in between, the
    new primary key derives another token and the VPS's callback was refused
    (the deploy failed at its boot deadline; found by
    tests/reliability/test_rotation_in_flight.py). So the token whose hash is
    armed is kept when any key of the ring derives it.
    """
    purpose = f"callback/{server.id}/{server.attempt}"
    if server.callback_token_hash:
        for key_id in reversed(ctx.keyring.key_ids):
            candidate = ctx.keyring.derive_token(purpose, key_id=key_id)
            if hash_token(candidate) == server.callback_token_hash:
                return candidate
    return ctx.keyring.derive_token(purpose)


def project_objects(ctx: JobContext) -> tuple[int, int]:
    """The ids of the shared firewall and the fleet SSH key (cached, else looked up or made)."""
    settings = ctx.settings
    firewall_id = ctx.hetzner.ensure_firewall(settings.firewall_name, settings.ssh_source_ranges)
    key_id = ctx.hetzner.ensure_fleet_key(
        f"{settings.name_prefix}-{FLEET_KEY_NAME_SUFFIX}", _fleet_public_key
    )
    return firewall_id, key_id


def _fleet_public_key() -> str:
    # Only there so Hetzner issues no root password; nobody keeps the private half.
    return generate_ssh_keypair(comment="rachel-cloud-fleet (no private key kept)").public_openssh


def create_server(server_id: int) -> str:
    """RQ job: create (or adopt) the server's VPS and move it to cloud_init."""
    ctx = context()
    with connection():
        server = _begin(ctx, server_id)
        if server is None:
            return "skipped"
        slog = server_logger(log, server.id, "creating", attempt=server.attempt)
        if server.create_requested_at is None and ctx.settings.pool_enabled:
            claimed = _claim_from_pool(ctx, server)
            if claimed is not None:
                return claimed
        settings = ctx.settings
        hetzner = ctx.hetzner
        try:
            user_data = _user_data(ctx, server)
            maybe_exists = server.create_requested_at is not None
            if not maybe_exists:
                hetzner.require_budget(settings.rate_limit_reserve)
            firewall_id, key_id = project_objects(ctx)
            if not maybe_exists:
                # Committed before the request: if we die after Hetzner created
                # the VPS, the next run looks it up instead of making a second.
                server.create_requested_at = ctx.clock.now()
            # The key pair, the armed token and the mark above: one UPDATE, before
            # the request that hands the key and the token to the VPS.
            server.save(only=_SAVED_BEFORE_CREATE)
            # The server's own location and type, then the fallbacks (jobs.capacity).
            placed = create_placed(
                ctx,
                server,
                CreateSpec(
                    server_id=server.id,
                    customer_id=server.customer_id,
                    name=server.name or f"{settings.name_prefix}-{server.id}",
                    server_type=server.server_type,
                    image=server.image,
                    location=server.location,
                    user_data=user_data,
                    env=settings.name_prefix,
                    maybe_exists=maybe_exists,
                ),
                (firewall_id, key_id),
                refresh=lambda: project_objects(ctx),
            )
        except HetznerError as exc:
            if exc.image_refused and image_store.forget_refused(
                server.image, exc.message, "system"
            ):
                exc = _image_gone(ctx, server, exc)
            return retry_or_fail(ctx, server, Status.CREATING, exc, _requeue(ctx, server))
        if placed is None:
            slog.info("the server left creating meanwhile; no VPS created")
            return "superseded"
        provider, adopted = placed
        deadline = ctx.clock.now() + timedelta(seconds=settings.boot_timeout_seconds)
        verb = "adopted" if adopted else "created"
        moved = transition(
            server.id,
            Status.CREATING,
            Status.CLOUD_INIT,
            message=f"{verb} Hetzner server {provider.id} ({provider.ipv4}); waiting for "
            f"cloud-init (deadline {settings.boot_timeout_seconds:.0f}s)",
            changes={
                "provider_id": provider.id,
                "ipv4": provider.ipv4,
                "ipv6": provider.ipv6,
                "deadline_at": deadline,
                "retries": 0,
                "last_error": None,
            },
            clock=ctx.clock,
            publish=ctx.publish,
        )
        if not moved:
            slog.warning(
                "Hetzner server %s %s, but the server left creating meanwhile; "
                "the reconciler will collect it if it is not ours any more",
                provider.id,
                verb,
            )
            return "superseded"
        enqueue_step(
            ctx.redis,
            FINISH,
            JobFunction.CHECK_BOOT_DEADLINE,
            server.id,
            "boot-deadline",
            attempt=server.attempt,
            delay=settings.boot_timeout_seconds,
            record=False,
            extra_args=(server.attempt,),
        )
        return f"{verb} {provider.id}"  # the transition logged it


def _image_gone(ctx: JobContext, server: Server, exc: HetznerError) -> HetznerError:
    """The server's image is gone: its next try creates from another (nothing was created).

    Returns:
        The error to retry on: transient now, since another image will be tried.
    """
    image = server.image
    Server.update(create_requested_at=None).where(
        (Server.id == server.id) & (Server.status == Status.CREATING.value)
    ).execute()
    record_event(
        server.id,
        "image",
        f"Hetzner refused image {image} ({exc.message}); it is marked deleted and the next "
        "try creates from the next image, or the stock image",
        clock=ctx.clock,
    )
    return HetznerError(f"image {image} refused: {exc.message}", code="image_gone", transient=True)


def _claim_from_pool(ctx: JobContext, server: Server) -> str | None:
    """Take over a warm pool server (`core.domain.pool_store.claim`) and queue the
    injection; None on a miss (the image path follows) or when the server left creating.

    Only before any create was sent (a retry may have a VPS on Hetzner already).
    """
    commit = current_commit(ctx.settings.rachel8_commit, ctx.clock)
    claimed = pool_store.claim(
        server,
        ctx.keyring,
        commit=commit,
        clock=ctx.clock,
        publish=ctx.publish,
        next_job=lambda row, entry: injection_job_id(row, entry, settings=ctx.settings),
    )
    if claimed is None:
        return None
    slog = server_logger(log, server.id, "creating", attempt=server.attempt)
    slog.info("claimed pool server %s (Hetzner server %s, warm for %.0fs); injecting secrets",
              claimed.pool_id, claimed.provider_id, claimed.waited_seconds)  # fmt: skip
    try:
        after_callback(ctx.redis, server, settings=ctx.settings, record=False)
        request_refill(ctx.redis)  # one fewer in the pool: refill now, not at the next tick
    except redis.RedisError as exc:
        slog.warning("could not queue the injection or the refill (%s); the sweeper queues "
                     "the injection, the cron the refill", exc)  # fmt: skip
    return f"claimed pool server {claimed.pool_id} (Hetzner server {claimed.provider_id})"


def _requeue(ctx: JobContext, server: Server) -> Requeue:
    def requeue(retry: int, delay: float) -> None:
        enqueue_step(
            ctx.redis,
            START,
            JobFunction.CREATE_SERVER,
            server.id,
            "creating",
            attempt=server.attempt,
            entry=server.status_changed_at,
            retry=retry,
            delay=delay,
            rate_limit=create_rate_limit(ctx.settings),
        )

    return requeue
