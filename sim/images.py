"""Snapshot images: made of a server's disk, listed beside the system images.

`create_image` (`start`) records the image `creating` and runs an action
(`create_image`, on the server and the image) that copies the server's disk
(`sim.disk.Disk`) at once, then, after `SimConfig.image_seconds`, makes the
image `available` and the action succeed. While it runs the server is locked
(`Server.imaging`): power actions, another image and deleting it answer
`locked`. Real Hetzner copies a running server's disk too, inconsistently
perhaps; a builder powers it off first.

A server created from an image (`resolve` finds it by id, or a system image
by id or name) gets a copy of its disk; system images carry none.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sim import catalog, render
from sim.disk import Disk, image_size_gb
from sim.errors import ApiError, invalid_field
from sim.state import Action, Image, Server

if TYPE_CHECKING:
    from sim.engine import Simulator

log = logging.getLogger(__name__)


def every_image(sim: Simulator) -> list[dict[str, Any]]:
    """The system images and the project's snapshots, rendered, by id."""
    snapshots = [render.image(i) for i in sorted(sim.store.images.values(), key=lambda i: i.id)]
    return catalog.images() + snapshots


def resolve(sim: Simulator, ref: str, server_type: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The image a server create names (id, or a system image's name) and its disk.

    Raises:
        ApiError: invalid_input: no such image for the type's architecture, an
            image not available yet, or one whose disk exceeds the type's.
    """
    architecture = server_type["architecture"]
    snapshot = sim.store.images.get(int(ref)) if ref.isdigit() else None
    if snapshot is None:
        system = catalog.image(ref, architecture)
        if system is None or system["architecture"] != architecture:
            raise invalid_field("image", "image not found for this server type's architecture")
        return system, None
    if snapshot.architecture != architecture:
        raise invalid_field("image", "image not found for this server type's architecture")
    if snapshot.status != "available":
        raise invalid_field("image", f"image {snapshot.id} is not available ({snapshot.status})")
    if snapshot.disk_size > server_type["disk"]:
        raise invalid_field(
            "image",
            f"image {snapshot.id} holds a {snapshot.disk_size:g} GB disk; server type "
            f"{server_type['name']} has {server_type['disk']} GB",
        )
    return render.image(snapshot), snapshot.disk


def _description(server: Server) -> str:
    # Hetzner generates one when none is given: the server and the time.
    return f"{server.name}-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}"


def start(
    sim: Simulator, server: Server, kind: str, description: str | None, labels: dict[str, str]
) -> tuple[Image, Action]:
    """Start making an image of `server`; call on the loop, under the lock.

    Raises:
        ApiError: locked (another action holds the server), invalid_input (a
            backup: the server has no backups enabled).
    """
    if kind == "backup":
        raise invalid_field("type", "backups are not enabled for this server")
    if server.status in ("initializing", "deleting") or server.imaging is not None:
        raise ApiError("locked", f"server {server.id} is locked by another action")
    image = Image(
        id=sim.store.next_image_id(),
        type=kind,
        description=description or _description(server),
        labels=labels,
        architecture=server.server_type["architecture"],
        disk_size=server.server_type["disk"],
        created_from=(server.id, server.name),
        base=server.image,
    )
    sim.store.images[image.id] = image
    action = sim.store.new_action(
        "create_image", "servers", [("server", server.id), ("image", image.id)]
    )
    server.imaging = image.id
    vps = sim.vpss.get(server.id)
    sim.spawn_task(server.id, _make(sim, server, image, action, vps))
    return image, action


async def _make(sim: Simulator, server: Server, image: Image, action: Action, vps: Any) -> None:
    try:
        if vps is not None:
            # The disk as it is now: the copy is what the request saw.
            disk = await asyncio.to_thread(
                Disk.capture, vps.fs, vps.systemd, vps.packages, sim.vps_dir(), str(image.id)
            )
        else:
            disk = server.disk  # never booted: the disk it was made with
        await sim.sleep(sim.config.image_seconds, sim.faults.action_delay)
        failed = sim.action_fails("create_image")
    finally:
        with sim.lock:
            server.imaging = None
    with sim.lock:
        if failed:
            action.fail("action_failed", "image creation failed (simulated fault)")
            image.status = "unavailable"
        else:
            image.disk, image.status, image.image_size = disk, "available", image_size_gb()
            action.succeed()
    if failed and vps is not None and disk is not None:
        await asyncio.to_thread(disk.remove)  # captured for nothing


def _in_use(sim: Simulator, disk: Disk) -> bool:
    """Whether an image holds `disk`, or a server made from it has no VPS yet."""
    return any(i.disk is disk for i in sim.store.images.values()) or any(
        s.disk is disk and s.id not in sim.vpss for s in sim.store.servers.values()
    )


def release(sim: Simulator, disk: Disk | None) -> None:
    """Remove `disk`'s files once nothing needs them (in a thread); under the lock, on the loop."""
    if disk is not None and not _in_use(sim, disk):
        sim.spawn_task(0, asyncio.to_thread(disk.remove))


def delete(sim: Simulator, image: Image) -> None:
    """Forget a snapshot image (its disk goes once no server waits for it); under the lock.

    Raises:
        ApiError: locked while it is being made.
    """
    if image.status == "creating":
        raise ApiError("locked", f"image {image.id} is being created")
    del sim.store.images[image.id]
    release(sim, image.disk)


def every_disk(sim: Simulator) -> list[Disk]:
    """Every disk copy the images and the servers hold, once each (to remove at close)."""
    held = [i.disk for i in sim.store.images.values()]
    held += [s.disk for s in sim.store.servers.values()]
    return list({id(d): d for d in held if d is not None}.values())
