"""One image build, start to end: builder, install, callback, clean, power off, snapshot.

The steps, each reported to `progress` (the CLI prints them, the job logs them):
1. a builder server from the stock image (RACHEL_IMAGE) with the stock user
   data (the install and the bootstrap), its own throwaway key pair (the
   private half lives in this process only), labelled as a builder of the
   image row (`core.domain.images`), never as a customer's server;
2. its callback (`core.domain.image_store.accept_build_callback`, the web
   app's), waited for until the build's deadline; a failed install fails the build;
3. over SSH, against the host key the callback pinned, the builder's leftovers
   removed (`core.cloud.cloudinit_image.BUILDER_LEFTOVERS`);
4. shutdown (clean), then power off (in case the OS did not), each waited for;
5. the snapshot, labelled with the commit and tool versions, waited for until available;
6. the builder deleted.

Never a builder left behind: whatever fails, `finally` deletes it (and a
snapshot that failed half-way), marking the build failed with the reason.
Should this process die, the row stays `building` past its deadline: the
image check fails it and the reconciler deletes the builder.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace

import paramiko

from core.cloud import ssh
from core.cloud.cloudinit import CloudConfigInput, Rachel8Install, render
from core.cloud.cloudinit_image import builder_cleanup_command
from core.cloud.provider import HetznerError
from core.cloud.ssh import SSHError, Target
from core.domain import image_store
from core.domain.images import builder_labels, builder_name, image_of_builder, snapshot_labels
from core.errors import RachelError
from core.platform.clock import utcnow
from core.security.crypto import generate_ssh_keypair
from core.store.db import connection
from core.store.models import Image
from jobs.context import JobContext
from jobs.creating import project_objects

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
#: Seconds between two looks at the row for the builder's callback.
CALLBACK_POLL = 0.25
TOKEN_BYTES = 32


class ImageBuildError(RachelError):
    """An image build that failed; the message says at which step and why."""

    code = "image_build_failed"


def image_callback_url(public_url: str, image_id: int) -> str:
    """Where a builder reports back."""
    return f"{public_url.rstrip('/')}/callbacks/image-build/{image_id}"


def _log_progress(image_id: int) -> Progress:
    return lambda message: log.info("image %s: %s", image_id, message)


def _remaining(row: Image) -> float:
    if row.deadline_at is None:
        return 0.0
    return max(0.0, (row.deadline_at - utcnow()).total_seconds())


def run_build(ctx: JobContext, image_id: int, progress: Progress | None = None) -> Image:
    """Carry out the build of image row `image_id` (state `building`, no builder yet).

    Returns:
        The row, now `available`.

    Raises:
        ImageBuildError: the build failed (the row is `failed`, with the reason;
            its builder is deleted, or left to the reconciler if Hetzner refused).
    """
    say = progress or _log_progress(image_id)
    with connection():
        row: Image = Image.get_by_id(image_id)
    builder: int | None = None
    create_sent = False  # from then on, Hetzner may hold a builder we have no id of
    try:
        objects = project_objects(ctx)
        create_sent = True
        # The builder's private key lives in this process only, for this build.
        builder, private_key = _create_builder(ctx, row, objects, say)
        row = _wait_for_callback(row, say)
        _clean(ctx, row, private_key, say)
        say(f"snapshot {_snapshot(ctx, row, builder, say)} available")
    except (RachelError, paramiko.SSHException, OSError) as exc:
        reason = str(exc)
        with connection():
            image_store.mark_failed(image_id, reason, "system")
        say(f"build failed: {reason}")
        raise ImageBuildError(f"image {image_id}: {reason}") from exc
    finally:
        if create_sent:
            _remove(ctx, image_id, builder, say)
    with connection():
        done: Image = Image.get_by_id(image_id)
    return done


def _create_builder(
    ctx: JobContext, row: Image, objects: tuple[int, int], say: Progress
) -> tuple[int, str]:
    """The builder's Hetzner id and the private half of its key."""
    settings = ctx.settings
    pair = generate_ssh_keypair(comment=f"rachel-cloud-builder-{row.id}")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    if not image_store.arm_token(row.id, token):
        raise ImageBuildError(f"image {row.id} is no longer building")
    install = replace(Rachel8Install.from_settings(settings), commit=row.commit)
    name = builder_name(settings.name_prefix, row.id)
    user_data = render(
        CloudConfigInput(
            hostname=name,
            authorized_key=pair.public_openssh,
            callback_url=image_callback_url(settings.public_url, row.id),
            callback_token=token,
            install=install,
            heartbeat_interval=settings.heartbeat_interval_seconds,
        )
    )
    firewall_id, key_id = objects
    created = ctx.hetzner.create_builder(
        name=name,
        server_type=row.server_type,
        image=row.base_image,
        location=row.location,
        user_data=user_data,
        labels=builder_labels(row.id, settings.name_prefix),
        firewall_id=firewall_id,
        ssh_key_id=key_id,
    )
    image_store.record_builder(row.id, created.id, created.ipv4)
    say(f"builder {name} (Hetzner server {created.id}, {created.ipv4}) created from "
        f"{row.base_image}; installing Rachel8 {row.commit[:12]}")  # fmt: skip
    return created.id, pair.private_openssh


def _wait_for_callback(row: Image, say: Progress) -> Image:
    while True:
        with connection():
            row = Image.get_by_id(row.id)
        if row.state != "building":
            raise ImageBuildError(f"the image became {row.state} meanwhile ({row.reason})")
        if row.called_back_at is not None:
            if row.reason:
                raise ImageBuildError(f"the builder's install failed: {row.reason}")
            say(f"the builder called back: Bun {row.bun_version}, Claude Code "
                f"{row.claude_code_version} installed")  # fmt: skip
            return row
        if _remaining(row) <= 0:
            raise ImageBuildError(
                "the builder did not call back before the build's deadline "
                f"(RACHEL_IMAGE_BUILD_TIMEOUT, {row.deadline_at:%H:%M:%S})"
            )
        time.sleep(CALLBACK_POLL)


def _clean(ctx: JobContext, row: Image, private_key: str, say: Progress) -> None:
    target = Target(
        host=row.builder_ipv4 or "",
        port=ctx.settings.vps_ssh_port,
        host_key=row.builder_host_key or "",
        private_key=private_key,
    )
    timeout = ctx.settings.inject_timeout_seconds
    client = ssh.connect(target, timeout)
    try:
        status, out, err = ssh.run(client, builder_cleanup_command(), timeout, wait=timeout)
    finally:
        client.close()
    if status != 0:
        raise SSHError(f"cleaning the builder failed (exit {status}): {err or out}",
                       code="builder_cleanup_failed", transient=False)  # fmt: skip
    say("the builder's keys, callback token and install result removed")


def _snapshot(ctx: JobContext, row: Image, builder: int, say: Progress) -> int:
    hetzner = ctx.hetzner
    hetzner.wait_for_action(
        hetzner.shutdown_server(builder), timeout=_remaining(row), operation="shutdown builder"
    )
    # A clean shutdown first; then power off in case the OS ignored it (idempotent).
    hetzner.wait_for_action(
        hetzner.poweroff_server(builder), timeout=_remaining(row), operation="power off builder"
    )
    say("the builder is off; snapshotting it")
    labels = snapshot_labels(row.id, row.commit, row.bun_version, row.claude_code_version,
                             ctx.settings.name_prefix)  # fmt: skip
    description = (
        f"rachel8 {row.commit[:12]} bun {row.bun_version} claude {row.claude_code_version}"
    )
    image, action = hetzner.start_snapshot(builder, description=description, labels=labels)
    try:
        hetzner.wait_for_action(action, timeout=_remaining(row), operation="create image")
        made = hetzner.get_image(image.id)
        if made is None or made.status != "available":
            raise ImageBuildError(f"snapshot {image.id} is not available once made")
        if not image_store.mark_available(row.id, made.id, made.image_size, made.disk_size):
            raise ImageBuildError("the image stopped building meanwhile")
    except BaseException:
        _delete_snapshot(ctx, image.id, say)
        raise
    return made.id


def _delete_snapshot(ctx: JobContext, image_id: int, say: Progress) -> None:
    try:
        ctx.hetzner.delete_image(image_id)
        say(f"the failed snapshot {image_id} deleted")
    except HetznerError as exc:
        log.error("image snapshot %s: could not delete it (%s); delete it by hand "
                  "(rachel-cloud image list shows it)", image_id, exc)  # fmt: skip


def _remove(ctx: JobContext, image_id: int, builder: int | None, say: Progress) -> None:
    """Delete the builder whatever happened (one a failed create may have made too)."""
    try:
        doomed = (
            [builder]
            if builder is not None
            else [
                s.id for s in ctx.hetzner.list_managed() if image_of_builder(s.labels) == image_id
            ]
        )
        for provider_id in doomed:
            ctx.hetzner.delete_server(provider_id)
            say(f"builder {provider_id} deleted")
    except HetznerError as exc:
        log.error("image %s: could not delete its builder (%s); the reconciler will", image_id, exc)
