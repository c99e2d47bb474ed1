"""The adapter's operations on snapshot images, power and capacity.

Mixed into `core.cloud.hetzner.HetznerAdapter`, which provides the SDK
client and `_call` (errors translated at the edge: `HetznerError`, and
`CapacityError` for a location without room). What an image build needs:
shut a server down or cut its power, snapshot it and wait for the
snapshot's action, find snapshots by label, delete them; and what a create
needs to avoid a location that has no room: each server type's availability
per location, as the API says it.

The SDK's `images.get_list(status=...)` sends `per_page` as the status
(hcloud 2.27), so status is never filtered through it: callers read
`ProviderImage.status`.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from hcloud import Client
from hcloud.firewalls import Firewall
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import Server
from hcloud.ssh_keys import SSHKey

from core.cloud.provider import HetznerError, ProviderImage, ProviderServer

log = logging.getLogger(__name__)


def image_reference(image: str) -> Image:
    """The SDK's reference to a create's image: a snapshot by its id (it has no name),
    a system image by its name."""
    return Image(id=int(image)) if image.isdigit() else Image(name=image)


#: An action still `running` past the caller's deadline.
ACTION_TIMEOUT = "action_timeout"


class ImageOperations(ABC):
    """Snapshots, power and capacity, over the adapter's client and `_call`."""

    client: Client
    #: Seconds between two looks at a running action.
    action_poll: float = 1.0

    @abstractmethod
    def _call(self, operation: str, func: Callable[[], Any]) -> Any:
        """Run `func` with the adapter's error translation and retries (`HetznerAdapter`'s)."""

    # --- builders -----------------------------------------------------------------

    def create_builder(
        self,
        *,
        name: str,
        server_type: str,
        image: str,
        location: str,
        user_data: str,
        labels: dict[str, str],
        firewall_id: int,
        ssh_key_id: int,
    ) -> ProviderServer:
        """Create a server with the given labels, no customer's: an image builder, or a
        warm pool server (`image` a system image's name or a snapshot's id).

        Raises:
            HetznerError: the create was refused (`uniqueness_error` for a name in use).
        """
        response = self._call(
            "create server (a builder or a pool server)",
            lambda: self.client.servers.create(
                name=name,
                server_type=ServerType(name=server_type),
                image=image_reference(image),
                location=Location(name=location),
                ssh_keys=[SSHKey(id=ssh_key_id)],
                firewalls=[Firewall(id=firewall_id)],
                user_data=user_data,
                labels=labels,
                start_after_create=True,
            ),
        )
        return ProviderServer.from_bound(response.server)

    # --- power ------------------------------------------------------------------

    def shutdown_server(self, provider_id: int) -> int:
        """Ask the OS to shut down (ACPI); the id of Hetzner's action. Does not wait."""
        action = self._call(
            "shutdown server", lambda: self.client.servers.shutdown(Server(id=provider_id))
        )
        return int(action.id or 0)

    def poweroff_server(self, provider_id: int) -> int:
        """Cut the power (no clean shutdown); the id of Hetzner's action. Does not wait."""
        action = self._call(
            "power off server", lambda: self.client.servers.power_off(Server(id=provider_id))
        )
        return int(action.id or 0)

    def wait_for_action(self, action_id: int, *, timeout: float, operation: str) -> None:
        """Poll an action until it finishes.

        Raises:
            HetznerError: the action ended in error (its code, not transient), or
                still ran after `timeout` seconds (`action_timeout`, transient),
                or the API failed.
        """
        deadline = time.monotonic() + timeout
        while True:
            action = self._call(operation, lambda: self.client.actions.get_by_id(action_id))
            if action.status == "success":
                return
            if action.status == "error":
                error = action.error or {}
                code = str(error.get("code") or "action_failed")
                raise HetznerError(
                    f"{operation}: action {action_id} failed: {code}: {error.get('message')}",
                    code=code,
                    transient=False,
                )
            if time.monotonic() >= deadline:
                raise HetznerError(
                    f"{operation}: action {action_id} still running after {timeout:.0f}s",
                    code=ACTION_TIMEOUT,
                    transient=True,
                )
            time.sleep(self.action_poll)

    # --- images -----------------------------------------------------------------

    def start_snapshot(
        self, provider_id: int, *, description: str, labels: dict[str, str]
    ) -> tuple[ProviderImage, int]:
        """Start a snapshot of a server (power it off first: a running disk may be
        copied inconsistently); the image (`creating`) and its action's id."""
        response = self._call(
            "create image",
            lambda: self.client.servers.create_image(
                Server(id=provider_id), description=description, type="snapshot", labels=labels
            ),
        )
        return ProviderImage.from_bound(response.image), int(response.action.id or 0)

    def create_snapshot(
        self, provider_id: int, *, description: str, labels: dict[str, str], timeout: float
    ) -> ProviderImage:
        """Snapshot a server and wait until the image is available.

        Raises:
            HetznerError: the create was refused (`locked`, `not_found`...), the
                action failed or timed out, or the image is gone.
        """
        image, action_id = self.start_snapshot(provider_id, description=description, labels=labels)
        log.info("server %s: snapshot %s being made (action %s)", provider_id, image.id, action_id)
        self.wait_for_action(action_id, timeout=timeout, operation="create image")
        done = self.get_image(image.id)
        if done is None:
            raise HetznerError(
                f"create image: image {image.id} vanished once made", code="not_found",
                transient=False,
            )  # fmt: skip
        return done

    def get_image(self, image_id: int) -> ProviderImage | None:
        """An image by id; None when Hetzner no longer has it."""
        try:
            image = self._call("get image", lambda: self.client.images.get_by_id(image_id))
        except HetznerError as exc:
            if exc.code == "not_found":
                return None
            raise
        return ProviderImage.from_bound(image)

    def list_snapshots(self, label_selector: str) -> list[ProviderImage]:
        """The project's snapshots matching a label selector, newest first."""
        images = self._call(
            "list images",
            lambda: self.client.images.get_all(
                type=["snapshot"], label_selector=label_selector, sort=["created:desc", "id:desc"]
            ),
        )
        return [ProviderImage.from_bound(i) for i in images]

    def delete_image(self, image_id: int) -> bool:
        """Delete a snapshot; False when Hetzner no longer has it (a success too).

        Raises:
            HetznerError: `locked` (being made; transient), `forbidden` (a system image).
        """
        try:
            self._call("delete image", lambda: self.client.images.delete(Image(id=image_id)))
        except HetznerError as exc:
            if exc.code == "not_found":
                return False
            raise
        return True

    # --- capacity ---------------------------------------------------------------

    def server_type_availability(self, server_type: str) -> dict[str, bool]:
        """Location name -> whether Hetzner says the type can be ordered there now.

        Locations that do not offer the type at all are absent.

        Raises:
            HetznerError: `not_found` for an unknown server type, or the API failed.
        """
        found = self._call(
            "get server type", lambda: self.client.server_types.get_by_name(server_type)
        )
        if found is None:
            raise HetznerError(
                f"get server type: no server type {server_type!r}", code="not_found",
                transient=False,
            )  # fmt: skip
        return {str(entry.location.name): bool(entry.available) for entry in found.locations or []}
